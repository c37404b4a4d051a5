"""ObsPy, seismology's own client, against a running `quake` node's FDSN event service.

Run by `services/tests/process.rs` with the node's base URL and a JSON file of the events the
node holds (unid -> time, lastupdate, lat, lon, depth, mag in microseconds, degrees, km).
Every check compares with what the node's own `/api/quakes` answers, or with the events
computed independently from that file. Exits non-zero on the first mismatch.
"""

import csv
import io
import json
import math
import sys
import urllib.error
import urllib.request
import warnings

from obspy import UTCDateTime
from obspy.clients.fdsn import Client
from obspy.clients.fdsn.header import FDSNNoDataException
from obspy.io.quakeml.core import _validate as validate_quakeml

BASE, EXPECTED = sys.argv[1], sys.argv[2]
with open(EXPECTED) as f:
    HELD = json.load(f)


def utc(us):
    return UTCDateTime(us / 1e6)


def unid(event):
    return str(event.resource_id).rsplit("/", 1)[1]


def get(path):
    """Status, content type and body of a GET, errors included."""
    try:
        with urllib.request.urlopen(BASE + path) as r:
            return r.status, r.headers.get("content-type", ""), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("content-type", ""), e.read()


def api_ids(query):
    if "limit=" not in query:
        query += "&limit=50000"
    status, _, body = get("/api/quakes?" + query)
    assert status == 200, (query, status, body[:300])
    return [f["id"] for f in json.loads(body)["features"]]


def check(name, cond, detail=""):
    if not cond:
        print(f"FAIL {name}: {detail}")
        sys.exit(1)
    print(f"ok   {name}")


# Connecting reads the WADL, catalogs and contributors; every default parameter is declared.
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    client = Client(base_url=BASE)
check("client connects and finds the event service", "event" in client.services)
check("the WADL declares every parameter ObsPy knows", not caught, [str(w.message) for w in caught])

START, END = "2024-04-11T00:00:00", "2024-04-19T00:00:00"
cases = [
    ("time window", dict(starttime=UTCDateTime(START), endtime=UTCDateTime(END)),
     f"starttime={START}&endtime={END}"),
    ("magnitude range", dict(starttime=UTCDateTime(START), endtime=UTCDateTime(END), minmagnitude=3, maxmagnitude=5),
     f"starttime={START}&endtime={END}&minmagnitude=3&maxmagnitude=5"),
    ("box", dict(starttime=UTCDateTime(START), endtime=UTCDateTime(END), minlatitude=30, maxlatitude=45,
                 minlongitude=20, maxlongitude=45),
     f"starttime={START}&endtime={END}&minlatitude=30&maxlatitude=45&minlongitude=20&maxlongitude=45"),
]
for order in ["time", "time-asc", "magnitude", "magnitude-asc"]:
    cases.append((f"orderby={order} limit=25", dict(starttime=UTCDateTime(START), endtime=UTCDateTime(END),
                                                     minmagnitude=2.5, orderby=order, limit=25),
                  f"starttime={START}&endtime={END}&minmagnitude=2.5&orderby={order}&limit=25"))
for name, kwargs, query in cases:
    cat = client.get_events(**kwargs)
    ids = [unid(e) for e in cat]
    want = api_ids(query)
    check(f"{name}: {len(ids)} events, the ids and order of /api/quakes", ids == want,
          f"{len(ids)} vs {len(want)}; first differences {[(a, b) for a, b in zip(ids, want) if a != b][:3]}")

# The whole week holds thousands of events: counted, held, and in QuakeML that validates.
status, ctype, xml = get(f"/fdsnws/event/1/query?starttime={START}&endtime={END}")
check("QuakeML answer", status == 200 and ctype.startswith("application/xml"), (status, ctype))
check("QuakeML validates against the QuakeML 1.2 schema", validate_quakeml(io.BytesIO(xml)))
in_week = {u for u, e in HELD.items() if UTCDateTime(START) <= utc(e["time"]) <= UTCDateTime(END)}
week = client.get_events(starttime=UTCDateTime(START), endtime=UTCDateTime(END))
check(f"the week: {len(week)} events, exactly those held", {unid(e) for e in week} == in_week,
      f"{len(week)} vs {len(in_week)}")
first = week[0]
held = HELD[unid(first)]
o, m = first.preferred_origin(), first.preferred_magnitude()
check("values survive: time, position, depth (m), magnitude",
      abs(o.time - utc(held["time"])) < 1e-3 and abs(o.latitude - held["lat"]) < 1e-9
      and abs(o.longitude - held["lon"]) < 1e-9 and abs(o.depth - held["depth"] * 1000) <= 0.5
      and (m is None if held["mag"] is None else abs(m.mag - held["mag"]) < 1e-9), (o, m, held))

# The text format: header, one line per event, the same events.
status, ctype, text = get(f"/fdsnws/event/1/query?starttime={START}&endtime={END}&format=text")
rows = list(csv.reader(io.StringIO(text.decode()), delimiter="|"))
header = [c.strip() for c in rows[0]]
check("text header", header[:13] == ["#EventID", "Time", "Latitude", "Longitude", "Depth/km", "Author", "Catalog",
                                     "Contributor", "ContributorID", "MagType", "Magnitude", "MagAuthor",
                                     "EventLocationName"], header)
check("text rows: 14 columns each, the events of the QuakeML in its order",
      all(len(r) == len(header) for r in rows[1:]) and [r[0] for r in rows[1:]] == [unid(e) for e in week])
for r in rows[1:]:
    UTCDateTime(r[1]), float(r[2]), float(r[3]), float(r[4])

# Paging: offset counts from 1.
page = client.get_events(starttime=UTCDateTime(START), endtime=UTCDateTime(END), limit=10, offset=11)
check("limit=10 offset=11 is the 11th to 20th event", [unid(e) for e in page] == [unid(e) for e in week][10:20])

# updatedafter: exactly the held events revised after the moment.
revisions = sorted(e["lastupdate"] for e in HELD.values())
cut = revisions[len(revisions) * 3 // 4]
since = client.get_events(starttime=UTCDateTime("2024-01-01"), endtime=UTCDateTime("2024-06-01"),
                          updatedafter=utc(cut))
want = {u for u, e in HELD.items() if e["lastupdate"] > cut and UTCDateTime("2024-01-01") <= utc(e["time"])}
check(f"updatedafter: {len(since)} events, exactly those revised after it", {unid(e) for e in since} == want,
      f"{len(since)} vs {len(want)}")


# A circle and a depth range against the held events themselves.
def arc(lat1, lon1, lat2, lon2):
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    return math.degrees(2 * math.asin(min(1, math.sqrt(a))))


circle = client.get_events(starttime=UTCDateTime(START), endtime=UTCDateTime(END), latitude=38, longitude=37,
                           maxradius=3, mindepth=5, maxdepth=15)
want = {u for u in in_week if arc(38, 37, HELD[u]["lat"], HELD[u]["lon"]) <= 3 and 5 <= HELD[u]["depth"] <= 15}
check(f"circle and depth: {len(circle)} events", len(want) > 0 and {unid(e) for e in circle} == want,
      f"{len(circle)} vs {len(want)}")

one = sorted(in_week)[0]
cat = client.get_events(eventid=one)
check("eventid: that one event", [unid(e) for e in cat] == [one])

# No data: 204 by default (ObsPy's no-data exception), 404 when asked.
try:
    client.get_events(starttime=UTCDateTime(START), endtime=UTCDateTime(END), minmagnitude=11)
    check("no match raises FDSNNoDataException", False)
except FDSNNoDataException:
    check("no match is 204, ObsPy's FDSNNoDataException", True)
status, _, body = get(f"/fdsnws/event/1/query?starttime={START}&endtime={END}&minmag=11&nodata=404")
check("nodata=404", status == 404 and body.startswith(b"Error 404: Not Found"), (status, body[:80]))

# Bad parameters: FDSN error text, 400, naming the parameter.
for query, param in [("minmagnitude=big", "minmagnitude"), ("orderby=random", "orderby"),
                     ("network=IU", "network"), ("starttime=2020-01-01&endtime=2024-01-01", "starttime"),
                     ("format=miniseed", "format"), ("latitude=95", "latitude")]:
    status, ctype, body = get("/fdsnws/event/1/query?" + query)
    text = body.decode()
    check(f"{query}: 400 in the FDSN error format",
          status == 400 and ctype.startswith("text/plain") and text.startswith("Error 400: Bad Request")
          and param in text and "Request:\n/fdsnws/event/1/query?" in text and "Service version:\n1.2.0" in text,
          (status, text[:200]))

status, _, body = get("/fdsnws/event/1/version")
check("version", status == 200 and body.strip() == b"1.2.0", body)
