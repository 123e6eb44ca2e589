"""Device selection: the caller decides, ``"auto"`` allowed."""

from __future__ import annotations

import torch


class DeviceError(RuntimeError):
    """The requested device is not available."""


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn ``auto`` / ``cpu`` / ``cuda`` / ``cuda:N`` into a usable device.

    ``auto`` picks CUDA when a GPU is visible, else the CPU. Asking for CUDA on
    a machine without one raises :class:`DeviceError` instead of silently
    falling back, so a scheduled GPU job never quietly trains on the CPU.
    """
    if isinstance(device, torch.device):
        dev = device
    elif device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            dev = torch.device(device)
        except RuntimeError as exc:
            raise DeviceError(
                f"unknown device {device!r}: use auto, cpu or cuda[:N]"
            ) from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device {str(dev)!r} requested but CUDA is not available on this "
                "machine (torch.cuda.is_available() is False); use device=cpu or auto"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(
                f"device {str(dev)!r} requested but only {torch.cuda.device_count()} "
                "CUDA device(s) are visible"
            )
    elif dev.type != "cpu":
        raise DeviceError(
            f"unsupported device type {dev.type!r}: use auto, cpu or cuda[:N]"
        )
    return dev
