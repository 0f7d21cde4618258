# mongod double: mongosh from npm, for the test that runs MongoDB's own shell against the double.
# Installed into the gitignored cache ($CACHE/mongosh); skipped when that version is there.
MONGOSH_VERSION=2.12.0
mongosh_dir="$CACHE/mongosh"
if [ "$("$mongosh_dir/node_modules/.bin/mongosh" --version 2>/dev/null)" != "$MONGOSH_VERSION" ]; then
    step "mongosh $MONGOSH_VERSION from npm"
    command -v npm >/dev/null || apt_install npm
    mkdir -p "$mongosh_dir"
    (cd "$mongosh_dir" && npm install --silent --no-audit --no-fund --prefix . "mongosh@$MONGOSH_VERSION" >/dev/null) \
        || die "npm install mongosh@$MONGOSH_VERSION failed"
fi
