"""The simulator's words for brand tier, condition and customer segment.

The history tables take any words in these columns (a platform's own tiers, its own condition
grades); these are only what the simulator draws from and prices by.
"""

TIERS = ("high_street", "contemporary", "premium", "designer", "luxury")
CONDITIONS = ("new", "excellent", "good", "fair")
SEGMENTS = ("bargain", "regular", "occasion", "premium")
