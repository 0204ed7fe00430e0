#!/bin/sh
# Install UL Studio's desktop entry, hicolor icons and AppStream metainfo for the current user, so the app
# shows up in the desktop's menu with its icon: `make install-desktop` (or `sh packaging/install_desktop.sh
# [EXECUTABLE]`; `--uninstall` removes them again). Files go under $XDG_DATA_HOME (default ~/.local/share).
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
APP_ID=io.github.ulstudio.ULStudio
DATA=${XDG_DATA_HOME:-$HOME/.local/share}
SIZES="16 24 32 48 64 128 256 512"

if [ "${1:-}" = "--uninstall" ]; then
    rm -f "$DATA/applications/$APP_ID.desktop" "$DATA/metainfo/$APP_ID.metainfo.xml" \
          "$DATA/icons/hicolor/scalable/apps/$APP_ID.svg"
    for s in $SIZES; do rm -f "$DATA/icons/hicolor/${s}x${s}/apps/$APP_ID.png"; done
    echo "removed UL Studio's desktop entry, icons and metainfo from $DATA"
    exit 0
fi

EXEC=${1:-$ROOT/.venv/bin/ul-studio}
case "$EXEC" in
    /*) ;;
    *) EXEC="$(pwd)/$EXEC" ;;
esac
if [ ! -x "$EXEC" ]; then
    echo "install-desktop: $EXEC is not an executable; run 'make install' first (or pass the ul-studio to use)" >&2
    exit 2
fi
case "$EXEC" in
    *'"'*|*'\'*|*'`'*|*'$'*)
        echo "install-desktop: the path $EXEC has characters a desktop entry cannot quote" >&2
        exit 2 ;;
esac

install -d "$DATA/applications" "$DATA/metainfo" "$DATA/icons/hicolor/scalable/apps"
# Exec and TryExec name this installation's ul-studio (quoted: the path may hold spaces).
sed -e "s|^Exec=.*|Exec=\"$EXEC\"|" -e "/^Exec=/a TryExec=$EXEC" \
    "$ROOT/packaging/desktop/$APP_ID.desktop" > "$DATA/applications/$APP_ID.desktop"
install -m 644 "$ROOT/packaging/desktop/$APP_ID.metainfo.xml" "$DATA/metainfo/$APP_ID.metainfo.xml"
install -m 644 "$ROOT/resources/icons/ul-studio.svg" "$DATA/icons/hicolor/scalable/apps/$APP_ID.svg"
for s in $SIZES; do
    install -d "$DATA/icons/hicolor/${s}x${s}/apps"
    install -m 644 "$ROOT/resources/icons/ul-studio-$s.png" "$DATA/icons/hicolor/${s}x${s}/apps/$APP_ID.png"
done

# Menus and icon themes pick the files up at once where these tools exist; elsewhere at the next login.
if command -v update-desktop-database >/dev/null 2>&1; then
    update-desktop-database -q "$DATA/applications" || true
fi
if command -v gtk-update-icon-cache >/dev/null 2>&1 && [ -f "$DATA/icons/hicolor/index.theme" ]; then
    gtk-update-icon-cache -q -t "$DATA/icons/hicolor" || true
fi
echo "installed $APP_ID for $EXEC under $DATA"
