"""The test environment: the real servers and machines the tests, the benchmarks and the
demo run against — redis-server (one, Sentinel groups, a Cluster), the local Kubernetes
control plane and its real node (hack/testenv/), the project's images, worker and operator
processes, and the helpers that wait for them. Not shipped: it lives beside the packages,
on the virtualenv's path (hack/setup.sh)."""
