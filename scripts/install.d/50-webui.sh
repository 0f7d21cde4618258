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
apt_install chromium chromium-driver
