# Monitoring: Debian's prometheus package for `promtool check metrics`, which the tests run on the
# platform's /metrics and on a project's Prometheus endpoint (tests/webui/test_prometheus.py).
# apt starts no service here (policy-rc.d): only the promtool binary is used.
apt_install prometheus
