"""Generation-only benchmarks: the service alone against a fast upstream, and its HTTP client choice.

The shared runtime is imported first so that these processes run grpc as the services do (its
GRPC_EXPERIMENTS default, read when grpc is first imported; llmsuite_common.grpc_experiments).
"""

import llmsuite_common  # noqa: F401
