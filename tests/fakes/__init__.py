"""Loopback fakes of outside HTTP services, written from their published references."""
