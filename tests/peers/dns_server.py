"""A small authoritative DNS server for tests (dnslib): serves one zone file over UDP and TCP
on 127.0.0.1 and writes every question it is asked to a log, one "NAME TYPE" line each, so a
test can count what a resolver asked and when.

    python dns_server.py --zone ZONE_FILE --log QUERY_LOG [--port 0]

The zone file is in master-file format (NAPTR, SRV, A, AAAA, ... with their TTLs); it must
start with an $ORIGIN and hold one SOA, whose minimum field is the negative-answer TTL. A name
with records of other types gets an empty NOERROR answer, an unknown name NXDOMAIN, both with
the SOA in the authority section (RFC 2308). Prints "LISTENING <port>" once both sockets are
bound, then serves until killed. Only loopback.
"""

import argparse
import sys
import threading
import time

from dnslib import QTYPE, RCODE, RR
from dnslib.server import BaseResolver, DNSLogger, DNSServer


class ZoneResolver(BaseResolver):
    def __init__(self, zone_text, log_path):
        self.records = RR.fromZone(zone_text)
        soa = [rr for rr in self.records if rr.rtype == QTYPE.SOA]
        if len(soa) != 1:
            raise SystemExit("the zone needs exactly one SOA record")
        self.soa = soa[0]
        self.names = {rr.rname for rr in self.records}
        self.log = open(log_path, "a", buffering=1)
        self.lock = threading.Lock()

    def resolve(self, request, handler):
        q = request.q
        with self.lock:
            self.log.write(f"{q.qname} {QTYPE[q.qtype]}\n")
        reply = request.reply()
        for rr in self.records:
            if rr.rname == q.qname and rr.rtype == q.qtype:
                reply.add_answer(rr)
        if not reply.rr:
            if q.qname not in self.names:
                reply.header.rcode = RCODE.NXDOMAIN
            reply.add_auth(self.soa)
        return reply


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--zone", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--port", type=int, default=0)
    args = p.parse_args()
    with open(args.zone) as f:
        resolver = ZoneResolver(f.read(), args.log)
    quiet = DNSLogger("-request,-reply,-truncated,-error,-recv,-send,-data", False)
    # UDP on the port asked for (0: any free one), then TCP on the same port.
    for _ in range(50):
        udp = DNSServer(resolver, address="127.0.0.1", port=args.port, logger=quiet)
        port = udp.server.server_address[1]
        try:
            tcp = DNSServer(resolver, address="127.0.0.1", port=port, tcp=True, logger=quiet)
            break
        except OSError:
            udp.server.server_close()
            if args.port:
                raise
    else:
        raise SystemExit("no port free for both UDP and TCP")
    udp.start_thread()
    tcp.start_thread()
    print(f"LISTENING {port}", flush=True)
    while udp.isAlive() and tcp.isAlive():
        time.sleep(0.2)
    sys.exit(1)


if __name__ == "__main__":
    main()
