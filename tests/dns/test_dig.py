"""cairn's DNS through `dig` (Debian's dnsutils), end to end (issue 12): the name forms and
records a Consul user asks for, as dig prints them, against a real `cairn agent -dev` with an
alt domain, a per-service TTL and a recursor that never answers.

Run: `python -m pytest -q tests/dns` (`.ci/run` does, with the binary in $CAIRN_BIN).
"""

import re
import subprocess

import pytest

from cairn_agent import bound_pair, ok


@pytest.fixture(scope="module")
def silent_recursor():
    """A UDP and TCP port that accepts and never answers: every forwarded name times out."""
    tcp, udp, port = bound_pair()
    tcp.listen(16)
    yield f"127.0.0.1:{port}"
    udp.close()
    tcp.close()


@pytest.fixture()
def agent_args(silent_recursor, tmp):
    config = f"{tmp}/dns.json"
    with open(config, "w") as f:
        f.write('{"dns_config": {"service_ttl": {"web": "30s"}, "recursor_timeout": "1s"}}')
    return ["-alt-domain=cairn.test", f"-recursor={silent_recursor}", f"-config-file={config}"]


def dig(dns_port, *args):
    """dig's output for `args` against the agent (no retries: one try each)."""
    result = subprocess.run(["dig", "@127.0.0.1", "-p", str(dns_port), "+tries=1", "+time=5", *args],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, f"dig {args} failed: {result.stdout}{result.stderr}"
    return result.stdout


def status(output):
    return re.search(r"status: (\w+)", output).group(1)


def section(output, name):
    """The records dig printed under `;; <name> SECTION:`, as lists of fields."""
    match = re.search(rf";; {name} SECTION:\n(.*?)(?:\n\n|\Z)", output, re.S)
    return [line.split() for line in match.group(1).splitlines()] if match else []


@pytest.fixture()
def catalog(agent):
    base, dns = agent
    for n, port in enumerate([8081, 8082, 8083], 1):
        ok(base, "PUT", "/v1/agent/service/register",
           {"ID": f"web-{n}", "Name": "web", "Port": port, "Tags": ["v1"] if n == 1 else []})
    ok(base, "PUT", "/v1/catalog/register", {"Node": "db-1", "Address": "10.5.0.7", "Service": {"Service": "db", "Port": 5432}})
    ok(base, "PUT", "/v1/catalog/register", {"Node": "ext", "Address": "10.5.0.8", "Service": {"Service": "backend", "Address": "backend.example.org", "Port": 443}})
    ok(base, "POST", "/v1/query", {"Name": "pg", "Service": {"Service": "db"}})
    return base, dns


def test_service_records_srv_glue_tags_and_ttls(catalog):
    _base, dns = catalog
    out = dig(dns, "web.service.consul", "SRV")
    assert status(out) == "NOERROR"
    answers, glue = section(out, "ANSWER"), section(out, "ADDITIONAL")
    assert sorted(int(r[6]) for r in answers) == [8081, 8082, 8083]
    assert all(r[1] == "30" for r in answers), "dns_config.service_ttl for web"
    assert [r[0] for r in glue if r[3] == "A"] == ["web-host.node.dc1.consul."] * 3, "one glue record per SRV record"
    out = dig(dns, "v1.web.service.consul", "SRV")
    assert [int(r[6]) for r in section(out, "ANSWER")] == [8081], "the tag form"
    out = dig(dns, "_web._v1.service.consul", "SRV")
    assert [int(r[6]) for r in section(out, "ANSWER")] == [8081], "RFC 2782 form"
    out = dig(dns, "db.service.consul", "A")
    assert [(r[3], r[4]) for r in section(out, "ANSWER")] == [("A", "10.5.0.7")]
    assert section(out, "ANSWER")[0][1] == "0", "no service_ttl entry for db: TTL 0"


def test_node_addr_ptr_cname_and_the_alt_domain(catalog):
    _base, dns = catalog
    out = dig(dns, "db-1.node.consul", "A")
    assert [r[4] for r in section(out, "ANSWER")] == ["10.5.0.7"]
    out = dig(dns, "0a050007.addr.dc1.consul", "A")
    assert [r[4] for r in section(out, "ANSWER")] == ["10.5.0.7"]
    out = dig(dns, "-x", "10.5.0.7")
    assert [(r[3], r[4]) for r in section(out, "ANSWER")] == [("PTR", "db-1.node.dc1.consul.")]
    out = dig(dns, "backend.service.consul", "A")
    assert [(r[3], r[4]) for r in section(out, "ANSWER")][:1] == [("CNAME", "backend.example.org.")]
    out = dig(dns, "db-1.node.cairn.test", "A")
    assert [r[4] for r in section(out, "ANSWER")] == ["10.5.0.7"]
    out = dig(dns, "web.service.cairn.test", "SRV")
    assert {r[7] for r in section(out, "ANSWER")} == {"web-host.node.dc1.cairn.test."}, "answers name the domain asked in"


def test_soa_ns_nxdomain_prepared_queries_tcp_and_a_silent_recursor(catalog):
    _base, dns = catalog
    out = dig(dns, "web.service.consul", "SOA")
    assert status(out) == "NOERROR" and [r[3] for r in section(out, "ANSWER")] == ["SOA"], "SOA below the apex"
    out = dig(dns, "db-1.node.consul", "NS")
    assert status(out) == "NOERROR" and {r[3] for r in section(out, "ANSWER")} == {"NS"}
    out = dig(dns, "nothing.service.consul", "A")
    assert status(out) == "NXDOMAIN" and [r[3] for r in section(out, "AUTHORITY")] == ["SOA"]
    out = dig(dns, "pg.query.consul", "A")
    assert [r[4] for r in section(out, "ANSWER")] == ["10.5.0.7"], "a prepared query by name"
    out = dig(dns, "+tcp", "web.service.consul", "SRV")
    assert len(section(out, "ANSWER")) == 3 and "flags: qr aa rd" in out
    out = dig(dns, "example.org", "A")
    assert status(out) == "SERVFAIL", "a recursor that never answers gives SERVFAIL"
    assert re.search(r"flags: qr rd ra;", out), "RA is set when recursors are configured"
