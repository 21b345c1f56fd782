"""Shared code of the trip-booking functions, shipped as a Lambda layer (/opt/python/trip_common)."""
