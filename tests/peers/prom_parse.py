"""Reads a Prometheus text exposition on stdin with Prometheus' own parser
(prometheus_client.parser) and prints every sample as one JSON object per line:
{"family", "type", "name", "labels", "value"}. A text the parser refuses exits non-zero."""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families


def main() -> int:
    text = sys.stdin.read()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            print(json.dumps({"family": family.name, "type": family.type,
                              "name": s.name, "labels": s.labels, "value": s.value}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
