#!/bin/bash
# private_rabbitmq.sh start|stop|restart ['extra rabbitmq.conf line']
#
# A RabbitMQ node of its own for measuring the broker's CPU per commit on a machine whose
# shared broker serves others: node amq@localhost, AMQP on 127.0.0.1:19621, distribution
# on 19622, management API on 127.0.0.1:19623 (guest/guest), data under $DIR. Its
# emulator runs under the process name amqbeam.smp (a copy of beam.smp started through
# a copy of the Erlang root whose erl script sets EMU=amqbeam), so per-process CPU
# figures (/proc/PID/stat) tell it apart from the shared node's beam.smp. Stop it by its
# process (stop), never by name across the machine. See docs/benchmarks.md, "RabbitMQ's
# work per commit".
set -eu
DIR=${DIR:-/tmp/amq}
ERTS=$(basename /usr/lib/erlang/erts-*)
R=$DIR/erlroot
setup() {
	[ -x $R/erts-*/bin/amqbeam.smp ] && return
	mkdir -p $R/bin $R/$ERTS/bin $DIR/rmq/home $DIR/rmq/mnesia $DIR/rmq/log
	ln -sfn /usr/lib/erlang/lib $R/lib
	ln -sfn /usr/lib/erlang/releases $R/releases
	cp -a /usr/lib/erlang/bin/* $R/bin/
	cp /usr/lib/erlang/$ERTS/bin/* $R/$ERTS/bin/
	cp /usr/lib/erlang/$ERTS/bin/beam.smp $R/$ERTS/bin/amqbeam.smp
	sed -i "s#^EMU=beam#EMU=amqbeam#; s#ROOTDIR=/usr/lib/erlang#ROOTDIR=$R#" $R/bin/erl $R/$ERTS/bin/erl
	rm -f $R/bin/erl.src
	echo "[rabbitmq_management]." >$DIR/rmq/enabled_plugins
	echo "[]." >$DIR/rmq/advanced.config
	: >$DIR/rmq/env.conf
}
stop() {
	P=$(cat $DIR/rmq/beam.pid 2>/dev/null || true)
	[ -n "$P" ] && kill "$P" 2>/dev/null && while kill -0 "$P" 2>/dev/null; do sleep 0.5; done
	rm -f $DIR/rmq/beam.pid
}
start() {
	setup
	printf 'listeners.tcp.default = 127.0.0.1:19621\nmanagement.tcp.port = 19623\nmanagement.tcp.ip = 127.0.0.1\nloopback_users = none\n%s\n' "${1:-}" >$DIR/rmq/rabbitmq.conf
	(
		export HOME=$DIR/rmq/home RABBITMQ_NODENAME=amq@localhost RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT=19621 \
			RABBITMQ_DIST_PORT=19622 RABBITMQ_MNESIA_BASE=$DIR/rmq/mnesia RABBITMQ_LOG_BASE=$DIR/rmq/log \
			RABBITMQ_CONFIG_FILE=$DIR/rmq/rabbitmq.conf RABBITMQ_ADVANCED_CONFIG_FILE=$DIR/rmq/advanced.config \
			RABBITMQ_ENABLED_PLUGINS_FILE=$DIR/rmq/enabled_plugins RABBITMQ_CONF_ENV_FILE=$DIR/rmq/env.conf \
			ERL_EPMD_ADDRESS=127.0.0.1 PATH=$R/bin:$PATH
		setsid /usr/lib/rabbitmq/bin/rabbitmq-server >$DIR/rmq/log/stdout.txt 2>&1 &
	)
	for _ in $(seq 1 60); do
		curl -sf -u guest:guest http://127.0.0.1:19623/api/overview >/dev/null && break
		sleep 1
	done
	for p in $(pgrep -x amqbeam.smp); do
		tr "\\0" "\\n" </proc/$p/cmdline | grep -q "^$DIR/rmq/" && echo $p >$DIR/rmq/beam.pid
	done
	echo "private node up: pid $(cat $DIR/rmq/beam.pid)"
}
case ${1:-} in
start) start "${2:-}" ;;
stop) stop ;;
restart) stop; start "${2:-}" ;;
*) echo "usage: $0 start|stop|restart ['rabbitmq.conf line']" >&2; exit 2 ;;
esac
