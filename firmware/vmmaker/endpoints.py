# Where each region/service lives, who backs it up, and which hosts may see credentials.
from .errors import ConfigError

REGIONS = ("tr", "fr", "usa", "de")
SERVICES = ("api", "cloud", "own")

# Seed: the cloud service really is spelled "clod-api".
_PREFIX = {"api": "api-", "cloud": "clod-api-"}

ALTERNATES = {"tr": ("de", "fr"), "fr": ("de", "tr"), "usa": ("de", "fr"), "de": ("fr", "tr")}


def primary_host(region, service):
    check(region, service)
    if service == "own":
        return "api.vmmaker.com.tr"
    return _PREFIX[service] + region + ".vmmaker.com"


def backup_host(primary):
    return "backup-" + primary


def check(region, service):
    if region not in REGIONS:
        raise ConfigError("unknown region %r: use one of %s" % (region, ", ".join(REGIONS)))
    if service not in SERVICES:
        raise ConfigError("unknown service %r: use one of %s" % (service, ", ".join(SERVICES)))
    if service == "own" and region != "tr":
        raise ConfigError("service 'own' (TR own systems, JWT) exists in region 'tr' only")


def allow_list(extra=()):
    hosts = set(extra)
    for r in REGIONS:
        for s in ("api", "cloud"):
            h = primary_host(r, s)
            hosts.add(h)
            hosts.add(backup_host(h))
    hosts.add("api.vmmaker.com.tr")
    hosts.add(backup_host("api.vmmaker.com.tr"))
    return hosts


class Endpoint:
    __slots__ = ("region", "service", "role", "host")

    def __init__(self, region, service, role, host):
        self.region = region
        self.service = service
        self.role = role
        self.host = host

    def __repr__(self):
        return "<%s/%s/%s %s>" % (self.region, self.service, self.role, self.host)


def plan(region, service, backups=None, alternates=None):
    """Ordered endpoints for one call: primary, backup, then each alternate region's pair."""
    check(region, service)
    backups = backups or {}
    alternates = ALTERNATES if alternates is None else alternates
    order = [region]
    if service != "own":
        for r in alternates.get(region, ()):
            if r not in REGIONS:
                raise ConfigError("alternate region %r for %r is unknown: use one of %s"
                                  % (r, region, ", ".join(REGIONS)))
            if r not in order:
                order.append(r)
    out = []
    for r in order:
        p = primary_host(r, service)
        out.append(Endpoint(r, service, "primary", p))
        out.append(Endpoint(r, service, "backup", backups.get(p) or backup_host(p)))
    return out
