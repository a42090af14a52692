#!/bin/sh
KAFKA_LOG4J_CONFIG=/opt/kafka/bin/log4j2.properties KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx768m}" \
  exec "$(dirname "$0")/kafka-run-class.sh" kafka.Kafka "$@"
