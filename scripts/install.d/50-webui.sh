# webui: the socket.io browser client from npm (vendored, never from a CDN), and Debian's Chromium
# for the browser tests (Playwright drives /usr/bin/chromium; Playwright never downloads a browser of its own).
SOCKET_IO_CLIENT_VERSION=4.8.4
SOCKET_IO_CLIENT_SHA256=d5d79a35039e860b32bdef4795528b05c2f788d4b2d9dacc913120e2878f7b3f
webui_vendor="$ROOT/webui/static/vendor"
if ! echo "$SOCKET_IO_CLIENT_SHA256  $webui_vendor/socket.io.min.js" | sha256sum --check --status 2>/dev/null; then
    step "socket.io-client $SOCKET_IO_CLIENT_VERSION from npm"
    command -v npm >/dev/null || apt_install npm
    webui_tmp=$(mktemp -d)
    (cd "$webui_tmp" && npm pack --silent "socket.io-client@$SOCKET_IO_CLIENT_VERSION" >/dev/null) \
        || die "npm pack socket.io-client@$SOCKET_IO_CLIENT_VERSION failed"
    tar -xzf "$webui_tmp/socket.io-client-$SOCKET_IO_CLIENT_VERSION.tgz" -C "$webui_tmp"
    echo "$SOCKET_IO_CLIENT_SHA256  $webui_tmp/package/dist/socket.io.min.js" | sha256sum --check --status \
        || die "socket.io.min.js from npm does not have the expected SHA-256"
    mkdir -p "$webui_vendor"
    cp "$webui_tmp/package/dist/socket.io.min.js" "$webui_tmp/package/LICENSE" "$webui_vendor/"
    rm -rf "$webui_tmp"
fi
# uPlot for the monitoring charts: canvas drawing, ~50 KB, made for time series of many thousands
# of points on one shared time axis with a synced cursor (ECharts is ~1 MB and Chart.js draws
# each point as an object: both slow down long before a year of rollups on a dozen series).
UPLOT_VERSION=1.6.32
UPLOT_JS_SHA256=19c8d4c6ad88929a79f4ae49d6f7161566dfd0ba3d15cc495e974f787eb78f1f
UPLOT_CSS_SHA256=df630c6a8d6f8eeaff264b50f73ce5b114f646ffd9a0bb74f049b0a00135fa04
if ! printf '%s  %s\n' "$UPLOT_JS_SHA256" "$webui_vendor/uPlot.iife.min.js" \
        "$UPLOT_CSS_SHA256" "$webui_vendor/uPlot.min.css" | sha256sum --check --status 2>/dev/null; then
    step "uPlot $UPLOT_VERSION from npm"
    command -v npm >/dev/null || apt_install npm
    webui_tmp=$(mktemp -d)
    (cd "$webui_tmp" && npm pack --silent "uplot@$UPLOT_VERSION" >/dev/null) \
        || die "npm pack uplot@$UPLOT_VERSION failed"
    tar -xzf "$webui_tmp/uplot-$UPLOT_VERSION.tgz" -C "$webui_tmp"
    printf '%s  %s\n' "$UPLOT_JS_SHA256" "$webui_tmp/package/dist/uPlot.iife.min.js" \
        "$UPLOT_CSS_SHA256" "$webui_tmp/package/dist/uPlot.min.css" | sha256sum --check --status \
        || die "uPlot from npm does not have the expected SHA-256"
    mkdir -p "$webui_vendor"
    cp "$webui_tmp/package/dist/uPlot.iife.min.js" "$webui_tmp/package/dist/uPlot.min.css" "$webui_vendor/"
    cp "$webui_tmp/package/LICENSE" "$webui_vendor/LICENSE.uplot"
    rm -rf "$webui_tmp"
fi
apt_install chromium chromium-driver
