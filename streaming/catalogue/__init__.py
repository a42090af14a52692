"""The live catalogue: items listed or changed while the stream runs.

The rental app lists and changes items on the compacted ``items`` topic (key: item id, value:
the item's row as JSON, ``listing.Listing``). The items table is the seed; the topic is read on
top of it from its beginning, so the whole catalogue is rebuilt from Kafka at every start.
``follower`` keeps each stage's ``Catalogue`` current in place, ``writer`` gives the item
attributes view its rows (Redis and Parquet) so the pricing service knows the item, and
``publish`` lists a table's items as the app would.
"""
