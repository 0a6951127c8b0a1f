#!/usr/bin/env bash
# Fills infra/nginx/hlsd-cache.conf's placeholders and prints the result, e.g.
#   infra/nginx/render.sh 443 /etc/letsencrypt/live/cam.example/fullchain.pem \
#     /etc/letsencrypt/live/cam.example/privkey.pem 127.0.0.1:8080 /var/cache/nginx/hlsd /cam \
#     | sudo tee /etc/nginx/conf.d/hlsd.conf
set -euo pipefail
if (($# != 6)); then
  echo "usage: $0 LISTEN CERT KEY HLSD_ADDR CACHE_DIR PREFIX   (PREFIX \"\" for none)" >&2
  exit 2
fi
sed -e "s|@LISTEN@|$1|g" -e "s|@CERT@|$2|g" -e "s|@KEY@|$3|g" -e "s|@HLSD@|$4|g" \
    -e "s|@CACHE@|$5|g" -e "s|@PREFIX@|$6|g" "$(dirname "$0")/hlsd-cache.conf"
