"""Shipment exceptions: summarises a late shipment, notifies the customer, then rebooks or credits."""

from agents.shipment_exceptions.agent import SPEC

__all__ = ["SPEC"]
