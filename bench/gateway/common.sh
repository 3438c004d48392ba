# Shared by the gateway benchmarks (sourced, not run): ports, waiting for a server, and the two
# proxies' configurations, so that every benchmark measures the same gateway and nginx setups.
# shellcheck shell=bash

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_http() {  # port path
  for _ in $(seq 1 300); do
    if curl -fsS -o /dev/null "http://127.0.0.1:$1$2" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "nothing answers on port $1" >&2
  exit 1
}

# The gateway's farm file: one pool "fixture" (alias "fast") over the fixture backend, a queue that
# never refuses, `threads` workers.
write_farm_yaml() {  # file gateway_port backend_port threads
  cat >"$1" <<YAML
listen: 127.0.0.1:$2
threads: $4
gateway:
  queue: {max: 100000, timeout_ms: 60000}
pools:
  - name: fixture
    aliases: [fast]
    slots_per_replica: 4096
    replicas: [{name: fixture, url: "http://127.0.0.1:$3"}]
YAML
}

# Debian's nginx as a plain reverse proxy with keep-alive upstreams, unprivileged under `dir`.
# `extra` goes to the main context (e.g. "master_process off;" to run the worker in the foreground
# process, as under valgrind).
write_nginx_conf() {  # dir nginx_port backend_port workers [extra]
  local dir=$1
  mkdir -p "$dir/logs" "$dir/tmp"
  cat >"$dir/nginx.conf" <<NGINX
worker_processes $4;
${5:-}
daemon off;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $dir/tmp/body;
  proxy_temp_path $dir/tmp/proxy;
  fastcgi_temp_path $dir/tmp/fastcgi;
  uwsgi_temp_path $dir/tmp/uwsgi;
  scgi_temp_path $dir/tmp/scgi;
  upstream backend { server 127.0.0.1:$3; keepalive 512; }
  server {
    listen 127.0.0.1:$2;
    keepalive_requests 1000000;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;   # relay SSE as it arrives, like the gateway
    }
  }
}
NGINX
}
