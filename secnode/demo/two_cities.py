"""The demo's recipe: two cities that call each other's services, built from the
:class:`~secnode.demo.federation.Federation` steps.

Aizu-Wakamatsu provides ``residents`` (REST: ``residents``, ``echo``) to Takamatsu's
portal; Takamatsu provides ``welfare/getResident`` (SOAP) to Aizu's portal. Both nodes
serve the web console and the resident disclosure page over HTTPS.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from secnode.demo.federation import INSTANCE, Federation

#: (name, member id, member name) of the sample cities, in the order federations take them.
CITIES: list[tuple[str, str, str]] = [
    ("aizu", f"{INSTANCE}/GOV/072028", "Aizu-Wakamatsu City"),
    ("takamatsu", f"{INSTANCE}/GOV/372013", "Takamatsu City"),
    ("kakogawa", f"{INSTANCE}/GOV/282103", "Kakogawa City"),
    ("sapporo", f"{INSTANCE}/GOV/011002", "Sapporo City"),
]
#: The subsystem each demo city provides its sample services from.
PROVIDES = {"aizu": "residents", "takamatsu": "welfare"}


def build_two_city_federation(
    base: Path, say: Callable[[str], None] = print, settings: dict[str, int] | None = None
) -> Federation:
    """Everything up to serving nodes: CA+OCSP, TSA, central, two registered nodes, services."""
    fed = Federation(base, say)
    fed.prepare(fresh=True)
    try:
        fed.pki()
        fed.registry(settings=settings)
        rest = fed.backend("rest_service")
        soap = fed.backend("soap_service")
        for name, member, member_name in CITIES[:2]:
            fed.add_node(
                name,
                member,
                member_name,
                subsystems=("portal", PROVIDES[name]),
                provider_subsystem=PROVIDES[name],
                console=True,
            )
        fed.register()
        aizu, takamatsu = fed.nodes["aizu"], fed.nodes["takamatsu"]
        for city in (aizu, takamatsu):
            fed.allow_client(city)
        residents = f"http://127.0.0.1:{rest}/residents"
        fed.add_service(aizu, "residents", "rest", residents, takamatsu, path="/1001")
        fed.add_service(aizu, "echo", "rest", f"http://127.0.0.1:{rest}/echo", takamatsu)
        soap_url = f"http://127.0.0.1:{soap}/soap"
        fed.add_service(takamatsu, "getResident", "soap", soap_url, aizu)
        fed.say("* starting both nodes")
        fed.start_nodes()
        fed.write_manifest()
        return fed
    except BaseException:
        fed.stop()
        raise
