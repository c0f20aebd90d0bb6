"""The in-chart Redis holds limits and spend counters: it must refuse writes when full, never evict."""

from k8s_objects import component, containers, named, of_kind


def test_in_chart_redis_never_evicts(rendered):
    cases = [
        case
        for case, objects in rendered.items()
        if any(component(o) == "redis" for o in of_kind(objects, "Deployment"))
    ]
    assert cases, "no values case renders the in-chart Redis"
    for case in cases:
        [redis] = list(containers(named(rendered[case], "Deployment", "redis")))
        args = redis["args"]
        policy = args[args.index("--maxmemory-policy") + 1]
        assert policy == "noeviction", f"{case}: maxmemory-policy {policy}"
        assert args[args.index("--maxmemory") + 1].endswith("mb"), f"{case}: Redis has no memory bound"
