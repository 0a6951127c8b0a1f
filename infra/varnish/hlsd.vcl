# Varnish in front of hlsd: a cache keyed on the URL with its query (so every _HLS_msn /
# _HLS_part / _HLS_skip answer is its own object) that collapses concurrent misses of one key
# into one request to hlsd and wakes every waiting viewer as soon as hlsd's response arrives
# (Varnish's waiting list; the response is streamed to all of them). nginx's proxy_cache_lock
# instead re-checks waiters on a 500 ms timer, which costs LL-HLS viewers up to 2.5 parts.
#
# Varnish speaks plain HTTP/1.1: put a TLS + HTTP/2 terminator in front for viewers (Caddy,
# infra/caddy/Caddyfile with HLSD_UPSTREAM = Varnish's address; or hitch).
#
# Placeholders (replace all; tests/proxies.rs does it):
#   @HLSD_HOST@ @HLSD_PORT@  hlsd's address, e.g. 127.0.0.1 and 8080
#   @PREFIX@                 public path prefix without trailing slash, e.g. /cam ("" for none)
vcl 4.1;

backend hlsd {
    .host = "@HLSD_HOST@";
    .port = "@HLSD_PORT@";
    .connect_timeout = 3s;
    .first_byte_timeout = 20s;      # > the longest held request (hlsd: 3 T)
    .between_bytes_timeout = 10s;
    .max_connections = 512;         # held requests need a connection each, but collapsed: few
}

sub vcl_recv {
    if (req.url ~ "^@PREFIX@/(metrics|healthz)(\?|$)") {
        return (synth(404));
    }
    if ("@PREFIX@" != "" && req.url !~ "^@PREFIX@/") {
        return (synth(404));
    }
    set req.url = regsub(req.url, "^@PREFIX@/", "/");
    # Viewers are anonymous: nothing per viewer in the key (hlsd never sets cookies).
    unset req.http.Cookie;
    if (req.method != "GET" && req.method != "HEAD") {
        return (pass);              # OPTIONS preflights: hlsd answers them
    }
    # Authorization (basic auth) stays a pass in the built-in VCL, which runs after this.
}

sub vcl_backend_response {
    # TTLs come from hlsd's Cache-Control (media immutable, blocking playlists 6 T, plain
    # playlists T/2). No grace: a stale playlist must not be served while hlsd is asked again.
    set beresp.grace = 0s;
    if (beresp.status >= 400 || beresp.http.Cache-Control ~ "no-store") {
        # Do not cache, and do not remember the key as uncacheable for long (the built-in
        # hit-for-miss is 2 min): the next request of this key may be collapsed again.
        set beresp.ttl = 1s;
        set beresp.uncacheable = true;
        return (deliver);
    }
}

sub vcl_deliver {
    if (obj.hits > 0) {
        set resp.http.X-Cache-Status = "HIT";
    } else {
        set resp.http.X-Cache-Status = "MISS";
    }
}
