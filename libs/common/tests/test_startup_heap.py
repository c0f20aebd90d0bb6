import gc

from llmsuite_common.startup_heap import freeze_startup_heap


def test_what_start_up_built_is_left_out_of_later_collections():
    built_at_start = [{"weights": [float(i)]} for i in range(10_000)]
    try:
        freeze_startup_heap()
        assert gc.get_freeze_count() >= len(built_at_start)
        # A full collection no longer walks them: generation 2 holds none of those objects.
        tracked = {id(o) for o in gc.get_objects(generation=2)}
        assert not any(id(o) in tracked for o in built_at_start[:100])
    finally:
        gc.unfreeze()
