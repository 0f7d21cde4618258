"""The local lab: several Debian hosts with systemd and sshd on this one machine."""

from wap.lab.lab import Lab, LabError

__all__ = ["Lab", "LabError"]
