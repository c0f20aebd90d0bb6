"""Policy documents (YAML or JSON files) parsed into the policy schema."""

import json

import yaml
from llmsuite_common.rules.policy import Policy


def parse_policy(text: str, *, suffix: str) -> Policy:
    data = json.loads(text) if suffix == ".json" else yaml.safe_load(text)
    return Policy.model_validate(data or {})
