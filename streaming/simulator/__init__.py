"""The rental app's stand-in: a seeded platform whose true price process is known.

``history.simulate`` writes the past, ``live.LiveSimulator`` continues it at wall-clock time,
``pricing`` is the documented ground truth both price by.
"""
