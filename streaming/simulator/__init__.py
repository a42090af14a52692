"""The rental app's stand-in: a seeded platform whose true price process is known.

``history.simulate`` writes the past, ``live.LiveSimulator`` continues it at wall-clock time,
both booking through ``world.World.book`` and pricing by ``price_process``, the documented ground
truth. ``replay`` sends a written history; it and the live stream build a booking's events in
``booking_events``.
"""
