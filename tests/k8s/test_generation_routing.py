"""A routing file set in the chart's values reaches generation as a file it accepts."""

from generation_service.routing_source import parse_routing
from k8s_objects import container_env, named, of_kind, pod_spec


def test_routing_values_render_a_mounted_file_generation_accepts(rendered):
    cases = 0
    for case, objects in rendered.items():
        env = container_env(objects, "generation")
        if "GENERATION_ROUTING_FILE" not in env:
            continue
        cases += 1
        path = env["GENERATION_ROUTING_FILE"]["value"]
        directory, _, filename = path.rpartition("/")
        spec = pod_spec(named(objects, "Deployment", "generation"))
        [mount] = [m for m in spec["containers"][0]["volumeMounts"] if m["mountPath"] == directory]
        # A subPath mount would never see ConfigMap updates, and reloading is the point.
        assert "subPath" not in mount, case
        [volume] = [v for v in spec["volumes"] if v["name"] == mount["name"]]
        [configmap] = [
            c for c in of_kind(objects, "ConfigMap") if c["metadata"]["name"] == volume["configMap"]["name"]
        ]
        keys = {"hosted": "stand-in"}
        table = parse_routing(configmap["data"][filename], environ={}, keys=keys)
        assert table.public_names(), case
    assert cases, "no values case sets components.generation.routing"
