"""Every kind of event the journal writes, with what it means. The scenario contract lists the
first group; the rest are ringfence's own. `event:`/`no_event:` expectations must name one of
these, so that a misspelt kind can not pass vacuously."""

from __future__ import annotations

EVENT_KINDS: dict[str, str] = {
    # --- the scenario contract's kinds
    "heartbeat_lost": "an observer hears a peer on none of its heartbeat links",
    "jeopardy": "a host is heard on only some of its heartbeat links",
    "link_down": "a NIC lost carrier",
    "link_up": "a NIC has carrier again",
    "link_flapping": "a NIC lost and regained carrier repeatedly",
    "host_suspect": "the leader hears a host on no link (directly or through peers)",
    "host_fenced": "a host is proven not to run VMs (fence agent or watchdog rule)",
    "self_fence": "a host stopped its VMs because it could not keep its lease",
    "fence_agent_ok": "a fence agent confirmed its target off",
    "fence_agent_failed": "a fence agent failed or did not answer in time",
    "lease_expired": "the store dropped a host's lease",
    "vm_started": "a hypervisor started a VM",
    "vm_stopped": "a hypervisor stopped or destroyed a VM",
    "vm_migrated": "a VM moved by live migration",
    "vm_recovered": "the leader moved a VM's lease to a new host",
    "vm_verified": "a moved VM answered its check",
    "vm_verify_failed": "a moved VM did not answer its check",
    "waiting_for_quorum": "a host can not reach a store majority and starts nothing",
    "quorum_gained": "a host reaches the store (again)",
    "quorum_lost": "a host can no longer reach the store",
    "failsafe_entered": "store lost by everyone, every host hears every other: VMs kept",
    "failsafe_left": "the store is back, or failsafe could not hold",
    "preexisting_split_brain": "start-up found evidence that two histories diverged",
    "host_ineligible": "a host failed a fitness check and receives no VM",
    "host_degraded": "early warnings on a host (flaps, corrected memory errors)",
    "nic_renamed": "an interface came up under a new name (same MAC)",
    "storage_unwritable": "a datastore write probe failed",
    "force_start": "an operator forced a VM on",
    "force_start_refused": "an operator's forced start was refused",
    "alert_sent": "an alert went out",
    "incident_opened": "an incident was opened",
    "incident_resolved": "an incident was resolved",
    # --- ringfence's own
    "heartbeat_restored": "a peer is heard on every link again",
    "host_alive": "a suspect host is heard again",
    "host_shutdown": "a host shut down or rebooted cleanly",
    "manager_elected": "a host became the cluster's leader",
    "fence_started": "the leader started a fence agent",
    "watchdog_reset": "a host's watchdog expired and reset it",
    "vm_pending": "a VM has no place to run",
    "vm_start_failed": "a hypervisor refused to start a VM",
    "vm_stop_failed": "a hypervisor failed to stop a VM",
    "hypervisor_error": "the hypervisor could not be asked",
    "fault_ignored": "the simulator does not model a scenario event",
}
