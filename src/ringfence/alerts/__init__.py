"""Alerts that reach a human: route models (`models`), delivery per route kind (`routes`,
`webhook`, `alertmanager`, `email`, `command`), the store-backed outbox and the background
worker that delivers it (`outbox`, `worker`), and the dead-man's switch."""
