# Monitoring: Debian's prometheus package for `promtool check metrics`, which the tests run on the
# platform's /metrics and on a project's Prometheus endpoint (tests/webui/test_prometheus.py), and
# the two exporters the agent's footprint is measured against (tests/bench/agent_footprint.py).
# apt starts no service here (policy-rc.d): the binaries are run by the tests and the bench.
apt_install prometheus prometheus-node-exporter prometheus-mongodb-exporter
