"""What the screenshot scenes (``counter_shots``, ``office_shots``) and the station's UI tests share."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from kiosk.config import CameraConfig, TerminalConfig

__all__ = ["MANY_DEPARTMENTS", "small_media", "with_many_departments"]


def small_media(cfg: TerminalConfig, camera: tuple[int, int], document: tuple[int, int] | None) -> TerminalConfig:
    """The config with synthetic sources of the given sizes and media on 127.0.0.1."""
    media = cfg.media
    assert media is not None
    doc = None
    if document is not None and media.document_camera is not None:
        doc = CameraConfig(media.document_camera.source, document[0], document[1], 5.0)
    cam = CameraConfig("synthetic:camera", camera[0], camera[1], 15.0)
    net = replace(media.network, ice_addresses=("127.0.0.1",))
    return cfg.with_overrides(media=replace(media, camera=cam, document_camera=doc, network=net))


# Departments of a large city hall, for the many-department scenes and tests (relay order = button order).
MANY_DEPARTMENTS: tuple[tuple[str, str, str], ...] = (
    ("soumu", "総務課", "General Affairs"), ("kikaku", "企画課", "Planning"), ("zaisei", "財政課", "Finance"),
    ("zeimu", "税務課", "Taxation"), ("juumin", "住民課", "Residents"), ("hoken", "保険年金課", "Insurance and Pensions"),
    ("fukushi", "福祉課", "Welfare"), ("kaigo", "介護保険課", "Long-term Care Insurance"),
    ("kosodate", "子育て支援課", "Child-rearing Support"), ("kenkou", "健康推進課", "Health Promotion"),
    ("kankyou", "環境課", "Environment"), ("nousei", "農政課", "Agriculture"),
    ("shoukou", "商工観光課", "Commerce and Tourism"), ("kensetsu", "建設課", "Construction"),
    ("toshi", "都市計画課", "City Planning"), ("suidou", "上下水道課", "Water and Sewerage"),
    ("kyouiku", "教育総務課", "Education"), ("gakkou", "学校教育課", "School Education"),
    ("shougai", "生涯学習課", "Lifelong Learning"), ("kaikei", "会計課", "Accounts"),
    ("senkyo", "選挙管理委員会", "Election Board"), ("nougyou", "農業委員会", "Agricultural Committee"),
    ("bousai", "防災課", "Disaster Prevention"), ("chiiki", "地域振興課", "Community Development"),
    ("keiyaku", "契約管財課", "Contracts and Property"), ("kyoudou", "市民協働課", "Civic Partnership"),
    ("kokusai", "国際交流課", "International Exchange"), ("shougaifuku", "障がい福祉課", "Disability Welfare"),
    ("koureisha", "高齢者支援課", "Senior Support"), ("jinji", "人事課", "Personnel"),
)


def with_many_departments(relay_cfg: Any, count: int) -> Any:
    """A relay config whose first office offers ``count`` departments (1..30), every counter offering all.

    The office's own departments come first; the others copy the first department's hours and fallback.
    """
    from relay_server.config import Department

    if not 1 <= count <= len(MANY_DEPARTMENTS):
        raise ValueError(f"count must be 1..{len(MANY_DEPARTMENTS)}, got {count}")
    first = next(iter(relay_cfg.departments.values()))
    office = relay_cfg.offices[first.office]
    departments = {d.id: d for d in relay_cfg.departments.values() if d.office == office.id}
    departments = dict(list(departments.items())[:count])
    for did, ja, en in MANY_DEPARTMENTS:
        if len(departments) >= count:
            break
        if did not in departments:
            departments[did] = Department(did, office.id, {"ja": ja, "en": en + ("" if "委員会" in ja else " Division")},
                                          first.hours, dict(first.fallback), dict(office.name))
    terminals = {tid: replace(t, departments=tuple(departments) if t.role != "lamp"
                              else tuple(d for d in t.departments if d in departments))
                 for tid, t in relay_cfg.terminals.items()}
    return replace(relay_cfg, departments=departments, offices={office.id: office}, terminals=terminals)
