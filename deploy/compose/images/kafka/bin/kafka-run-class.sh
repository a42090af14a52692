#!/bin/sh
# Runs a Kafka main class on the pinned jars, as the upstream script of this name does.
# Tools log warnings to stderr; the broker logs to stdout (log4j2.properties).
exec java ${KAFKA_HEAP_OPTS:--Xmx256m} -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
  -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
  -Dlog4j2.configurationFile="${KAFKA_LOG4J_CONFIG:-/opt/kafka/bin/tools-log4j2.properties}" \
  ${KAFKA_OPTS:-} -cp "/opt/kafka/libs/*" "$@"
