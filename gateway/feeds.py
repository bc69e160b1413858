"""What the event streams carry, read by the hub's one poller (:mod:`gateway.streams`).

- :class:`StudyFeed`: a study's persisted events (``study_events``), resumable by their ``seq``;
  the stream ends after the study's terminal event (or when the study is deleted).
- :class:`ConsultationFeed`: a user's consultations as they change; the event id is the change
  time in microseconds (resume with ``Last-Event-ID``).

Each poll is one query for all subscribers of the feed (in chunks of a few hundred ids).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.models import Consultation, Study, StudyEvent
from gateway.schemas import ConsultationPublic
from gateway.state import GatewayState
from gateway.streams import Subscriber, sse
from gateway.studies import TERMINAL, expire_if_stale
from shared.clock import now

CHUNK = 200


class StudyFeed:
    """Subscribers follow one study each, from an event ``seq`` on."""

    def __init__(self, state: GatewayState) -> None:
        self.state = state
        self._by_study: dict[str, dict[Subscriber, int]] = defaultdict(dict)  # -> last seq sent
        self._study_of: dict[Subscriber, str] = {}

    def follow(self, sub: Subscriber, study_id: str, after: int) -> None:
        self._by_study[study_id][sub] = after
        self._study_of[sub] = study_id
        self.state.streams.wake()

    def has_subscribers(self) -> bool:
        return bool(self._by_study)

    def drop(self, sub: Subscriber) -> None:
        study_id = self._study_of.pop(sub, None)
        if study_id is None:
            return
        subs = self._by_study.get(study_id, {})
        subs.pop(sub, None)
        if not subs:
            self._by_study.pop(study_id, None)

    async def poll(self, session: AsyncSession) -> bool:
        ids = list(self._by_study)
        stale_before = now() - timedelta(seconds=self.state.settings.relay_stale_s)
        statuses: dict[str, str] = {}
        for chunk in _chunks(ids):
            # the status first: events read after a terminal status include its last event
            rows = await session.execute(
                select(Study.id, Study.status, Study.updated_at).where(Study.id.in_(chunk))
            )
            for sid, status, updated_at in rows.all():
                statuses[sid] = status
                if status not in TERMINAL and updated_at < stale_before:
                    study = await session.get(Study, sid)
                    if study is not None:  # its relay went silent: ends failed, with its event
                        await expire_if_stale(self.state, session, study)
                        statuses[sid] = study.status
        for sid in ids:
            if sid not in statuses:  # deleted meanwhile
                for sub in list(self._by_study.get(sid, {})):
                    sub.end("gone")
        live = [sid for sid in ids if sid in statuses and sid in self._by_study]
        # only those subscribed now: one who joins during the queries waits for the next tick
        members = {sid: list(self._by_study[sid]) for sid in live}
        for chunk in _chunks(live):
            cursors = {
                sid: min(self._by_study.get(sid, {}).get(sub, 0) for sub in members[sid])
                for sid in chunk
            }
            events = await session.execute(
                select(StudyEvent.study_id, StudyEvent.seq, StudyEvent.event, StudyEvent.data)
                .where(
                    or_(
                        *(
                            and_(StudyEvent.study_id == sid, StudyEvent.seq > cur)
                            for sid, cur in cursors.items()
                        )
                    )
                )
                .order_by(StudyEvent.study_id, StudyEvent.seq)
            )
            for sid, seq, event, data in events.all():
                payload = json.dumps(data, separators=(",", ":"))
                subs = self._by_study.get(sid, {})
                for sub in members[sid]:
                    if sub in subs and seq > subs[sub]:
                        sub.send(sse(event, payload, str(seq)))
                        subs[sub] = seq
        for sid in live:
            if statuses[sid] in TERMINAL:
                for sub in members[sid]:
                    sub.end("finished")
        return False


Render = Callable[[AsyncSession, list[Consultation]], Awaitable[list[ConsultationPublic]]]


class _Follower:
    """A consultation subscriber's position: every change at or before ``floor`` was handled;
    later ones already sent are in ``sent`` (a change may commit after a later-stamped one)."""

    def __init__(self, floor: datetime) -> None:
        self.floor = floor
        self.sent: set[tuple[str, datetime]] = set()


class ConsultationFeed:
    """Subscribers follow their own consultations (as patient or as doctor)."""

    LIMIT = 500

    def __init__(self, state: GatewayState, render: Render) -> None:
        self.state = state
        self.render = render
        self._subs: dict[Subscriber, _Follower] = {}
        # a change is looked for again this long after its stamp, for commits that land late
        self.overlap = timedelta(seconds=max(2.0, 4 * state.settings.events_poll_s))

    def follow(self, sub: Subscriber, since_us: int) -> None:
        self._subs[sub] = _Follower(datetime.fromtimestamp(since_us / 1e6, UTC))
        self.state.streams.wake()

    def has_subscribers(self) -> bool:
        return bool(self._subs)

    def drop(self, sub: Subscriber) -> None:
        self._subs.pop(sub, None)

    async def poll(self, session: AsyncSession) -> bool:
        started = now()
        subs = dict(self._subs)
        floor = min(f.floor for f in subs.values())
        patients = {s.user_id for s in subs if s.role != "doctor"}
        doctors = {s.user_id for s in subs if s.role == "doctor"}
        mine = [Consultation.patient_id.in_(c) for c in _chunks(patients)]
        mine += [Consultation.doctor_id.in_(c) for c in _chunks(doctors)]
        rows = list(
            (
                await session.execute(
                    select(Consultation)
                    .where(or_(*mine), Consultation.updated_at > floor)
                    .order_by(Consultation.updated_at, Consultation.id)
                    .limit(self.LIMIT)
                )
            ).scalars()
        )
        public = await self.render(session, rows) if rows else []
        for row, item in zip(rows, public, strict=True):
            stamp = row.updated_at
            event = sse("consultation", item.model_dump_json(), str(int(stamp.timestamp() * 1e6)))
            for sub, pos in subs.items():
                owner = row.doctor_id if sub.role == "doctor" else row.patient_id
                key = (row.id, stamp)
                if owner == sub.user_id and stamp > pos.floor and key not in pos.sent:
                    sub.send(event)
                    pos.sent.add(key)
        more = len(rows) == self.LIMIT
        settled = (
            rows[-1].updated_at - timedelta(microseconds=1) if more else started - self.overlap
        )
        for pos in subs.values():
            if settled > pos.floor:
                pos.floor = settled
                pos.sent = {k for k in pos.sent if k[1] > settled}
        return more


def _chunks(ids: Sequence[str] | set[str]) -> list[list[str]]:
    items = list(ids)
    return [items[i : i + CHUNK] for i in range(0, len(items), CHUNK)]
