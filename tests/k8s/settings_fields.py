"""The services' settings classes and the env var names they read."""

import importlib
import inspect

from llmsuite_common.settings import ServiceSettings
from pydantic import SecretStr


def settings_class(service: str) -> type[ServiceSettings]:
    module = importlib.import_module(f"{service}_service.settings")
    found = [
        cls for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, ServiceSettings) and cls is not ServiceSettings and cls.__module__ == module.__name__
    ]  # fmt: skip
    assert len(found) == 1, f"{module.__name__} should define one ServiceSettings subclass, found {found}"
    return found[0]


def env_names(cls: type[ServiceSettings]) -> set[str]:
    prefix = cls.model_config.get("env_prefix", "")
    return {f"{prefix}{name}".upper() for name in cls.model_fields}


def secret_fields(cls: type[ServiceSettings]) -> set[str]:
    prefix = cls.model_config.get("env_prefix", "")
    return {f"{prefix}{name}".upper() for name, f in cls.model_fields.items() if f.annotation is SecretStr}
