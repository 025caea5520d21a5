"""The farm's front: the worker service with its jobs on Ray slots and a live cluster line in STATUS."""

from __future__ import annotations

import dataclasses

from animus3d_shared import protocol as p

from ..service.server import WorkerService
from . import cluster


class FarmService(WorkerService):
    """``WorkerService`` (same protocol, keys, limits, store) whose runner is a ``RaySlotRunner``."""

    def __init__(self, config, runner_factory, slots: int, job_device: str) -> None:
        super().__init__(config, runner_factory)
        self.slots = slots
        self.job_device = job_device
        self.device_description = cluster.describe(slots, job_device)

    def _status_reply(self, identity: str) -> p.StatusReply:
        reply = super()._status_reply(identity)
        return dataclasses.replace(reply, device=cluster.describe(self.slots, self.job_device))
