"""The words the history tables accept for brand tier, condition and customer segment.

The tables' contract owns its vocabulary; the simulator draws from it, so a user's own files
and the simulator's output are checked against the same lists.
"""

TIERS = ("high_street", "contemporary", "premium", "designer", "luxury")
CONDITIONS = ("new", "excellent", "good", "fair")
SEGMENTS = ("bargain", "regular", "occasion", "premium")
