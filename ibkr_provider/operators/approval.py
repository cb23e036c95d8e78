"""``IbkrPlanApprovalOperator``: a person approves a plan in Airflow's UI before its orders go.

Built on Airflow's own human-in-the-loop ``ApprovalOperator`` (standard provider): the request
shows on the UI's "Required actions" page with the plan as Markdown
(:mod:`ibkr_provider.workflows.approval`), Airflow parks the task while it waits (3.3: the
``awaiting_input`` state, no triggerer), enforces ``response_timeout`` and sends its notifiers.
An operator rather than a task group: it is one decision with one record, and users drop it
between their own plan and place tasks.

- A dry run needs no approval; a live account always does; a paper account does too unless
  ``auto_approve_paper``.
- Reject, and a timeout (whose default is Reject: a timeout never approves), skip the tasks
  right after it (the place tasks), so nothing is placed; a summary task after those still runs.
- The decision (who, when, the option, the plan hash) goes to the trade journal when
  ``journal_conn_id`` is set, and is returned (XCom): place tasks compare the plan hash they
  were given with the approved one (:class:`~ibkr_provider.operators.orders.IbkrPlaceOrderOperator`
  ``approved_plan_hash``).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator, HITLOperator
from airflow.sdk import BaseNotifier, Context
from airflow.sdk.bases.xcom import BaseXCom

from ibkr_provider.client import fields
from ibkr_provider.client.errors import IbkrErrorCode, IbkrOrderRefusedError
from ibkr_provider.client.fields import flag
from ibkr_provider.failures import fail_fast
from ibkr_provider.notifications import IbkrEvent, notifier_list, notify, with_event
from ibkr_provider.workflows.approval import approval_body, approval_subject, plan_hash
from ibkr_provider.workflows.order_guard import refuse_unless_allowed


def names_of(approvers: Sequence[str] | str | None) -> list[str]:
    """Airflow user names from a list, or from the text a template renders a list param into
    (``['alice', 'bob']``, or ``alice, bob``)."""
    if approvers is None:
        return []
    if isinstance(approvers, str):
        text = approvers.strip()
        if text.startswith("["):
            parsed = json.loads(text.replace("'", '"'))
            return [str(name).strip() for name in parsed if str(name).strip()]
        return [name.strip() for name in text.split(",") if name.strip() and name.strip() != "None"]
    return [str(name).strip() for name in approvers if str(name).strip()]


class IbkrPlanApprovalOperator(ApprovalOperator):
    """Ask a person to approve the plan another task pushed to XCom, before its orders go.

    Example::

        approve = IbkrPlanApprovalOperator(
            task_id="approve",
            plan_task_id="plan",              # pushes the plan under the XCom key "plan"
            dry_run="{{ params.dry_run }}",
            allow_live="{{ params.allow_live }}",
            approvers=["alice"],
            approval_timeout_minutes=60,
        )

    :param plan_task_id: the task whose XCom ``plan_key`` holds the plan
        (:meth:`~ibkr_provider.workflows.plan.RebalancePlan.as_json`).
    :param dry_run: no approval is asked for a dry run (templated; True/False only).
    :param allow_live: as the place tasks' (templated): a live plan without it fails here, before
        anyone is asked to approve what would be refused.
    :param auto_approve_paper: approve a plan for an account IBKR reports as paper without asking.
    :param approvers: Airflow user names who may decide (templated); empty: any user allowed to
        act on the DAG.
    :param approval_timeout_minutes: then the request times out as Reject (templated; enforced by
        the scheduler).
    :param journal_conn_id: the trade journal's connection (templated; the plan and the decision
        are appended once; empty: no journal).
    :param notifiers: Airflow notifiers (e.g. ``SmtpNotifier``) told of the request (by Airflow,
        which fails the task when one fails) and of the decision
        (:mod:`ibkr_provider.notifications`: templates read ``{{ ibkr_event.subject }}``).
    :return: ``{"approved", "plan_hash", "decision", "by", "at", "asked"}``.
    """

    template_fields: Sequence[str] = (
        *ApprovalOperator.template_fields,
        "plan_dry_run",
        "allow_live",
        "auto_approve_paper",
        "approvers",
        "approval_timeout_minutes",
        "journal_conn_id",
    )

    def __init__(
        self,
        *,
        plan_task_id: str,
        plan_key: str = "plan",
        dry_run: bool | str = False,
        allow_live: bool | str = False,
        auto_approve_paper: bool | str = False,
        approvers: Sequence[str] | str = (),
        approval_timeout_minutes: int | str = 60,
        journal_conn_id: str | None = None,
        notifiers: BaseNotifier | Sequence[BaseNotifier] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            subject="IBKR orders awaiting approval",
            defaults=[self.REJECT],
            notifiers=notifier_list(notifiers),
            **kwargs,
        )
        self.approvers = approvers
        self.approval_timeout_minutes = approval_timeout_minutes
        self.plan_task_id = plan_task_id
        self.plan_key = plan_key
        # Not "self.dry_run": BaseOperator.dry_run() is a method of its own.
        self.plan_dry_run = dry_run
        self.allow_live = allow_live
        self.auto_approve_paper = auto_approve_paper
        self.journal_conn_id = journal_conn_id

    def _plan(self, context: Context) -> Mapping[str, Any]:
        plan = context["ti"].xcom_pull(task_ids=self.plan_task_id, key=self.plan_key)
        if not isinstance(plan, Mapping) or "orders" not in plan:
            raise IbkrOrderRefusedError(
                f"no plan in XCom {self.plan_key!r} of task {self.plan_task_id!r}: nothing to approve, "
                "and nothing is placed",
                code=IbkrErrorCode.PLAN_CHANGED,
            )
        return plan

    def execute(self, context: Context) -> Any:
        with fail_fast(f"IBKR approval ({self.task_id})"):
            plan = self._plan(context)
            digest = plan_hash(plan)
            if flag("dry_run", self.plan_dry_run):
                return self._decided(context, plan, digest, "dry run", by="dry run", asked=False)
            # Nobody is asked to approve what the live guard would refuse anyway.
            account, live = str(plan.get("account_id")), not plan.get("paper")
            refuse_unless_allowed(
                account, live=live, dry_run=False, allow_live=flag("allow_live", self.allow_live)
            )
            if plan.get("paper") and flag("auto_approve_paper", self.auto_approve_paper):
                return self._decided(
                    context, plan, digest, self.APPROVE, by="auto_approve_paper", asked=False
                )
            if not plan.get("orders"):
                return self._decided(context, plan, digest, "nothing to approve", by="plan", asked=False)
            minutes = fields.number("approval_timeout_minutes", self.approval_timeout_minutes, positive=True)
            self.response_timeout = dt.timedelta(minutes=minutes or 60)
            self.assigned_users = [{"id": name, "name": name} for name in names_of(self.approvers)] or None
        self.subject = approval_subject(plan)
        self.body = approval_body(plan, digest=digest)
        where = "Airflow's Required actions page (Browse > Required Actions)"
        request = f"{self.body}\n\nApprove or Reject on {where} within {minutes or 60:g} minutes."
        with_event(context, IbkrEvent("approval_requested", self.subject, request))
        return super().execute(context)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        """Record the decision, then let Airflow's ApprovalOperator act on it. Recorded first: on
        Reject it skips the tasks after it by raising (Airflow 3), so nothing after that runs;
        the decision is pushed as this task's XCom itself for the same reason."""
        answer = HITLOperator.execute_complete(self, context=context, event=event)
        user = answer["responded_by_user"]
        chosen = answer["chosen_options"][0]
        by = user["name"] if user else f"timeout (default {chosen})"
        plan = self._plan(context)
        decided = self._decided(context, plan, plan_hash(plan), chosen, by=by, at=answer["responded_at"])
        context["ti"].xcom_push(key=BaseXCom.XCOM_RETURN_KEY, value=decided)
        super().execute_complete(context=context, event=event)
        return decided

    def _decided(
        self,
        context: Context,
        plan: Mapping[str, Any],
        digest: str,
        decision: str,
        *,
        by: str,
        at: dt.datetime | None = None,
        asked: bool = True,
    ) -> dict[str, Any]:
        approved = decision in (self.APPROVE, "dry run", "nothing to approve")
        when = (at or dt.datetime.now(dt.timezone.utc)).isoformat()
        self.log.info(
            "Plan %s for %s: %s by %s at %s", digest[:16], plan.get("account_id"), decision, by, when
        )
        if decision != "dry run":
            if self.journal_conn_id:
                self._journal(context, plan, digest, decision, by, when)
            subject = f"{decision} by {by}: {approval_subject(plan).replace('Approve ', '', 1)}"
            text = f"Plan {digest[:16]} for {plan.get('account_id')}: {decision} by {by} at {when}."
            notify(self.notifiers, context, IbkrEvent("decided", subject, text), self.log)
        return {
            "approved": approved,
            "plan_hash": digest,
            "decision": decision,
            "by": by,
            "at": when,
            "asked": asked,
        }

    def _journal(
        self, context: Context, plan: Mapping[str, Any], digest: str, decision: str, by: str, when: str
    ) -> None:
        from ibkr_provider.hooks.journal import IbkrJournalHook
        from ibkr_provider.journal.entries import EntryKind, JournalEntry, RunRef

        ti = context["ti"]
        run = RunRef(ti.dag_id, ti.run_id, ti.task_id)
        entries = [
            JournalEntry(
                EntryKind.PLAN, run, "plan", str(plan.get("account_id")), plan_hash=digest, payload=plan
            ),
            JournalEntry(
                EntryKind.DECISION,
                run,
                f"decision:{digest}",
                str(plan.get("account_id")),
                plan_hash=digest,
                actor=by,
                payload={"decision": decision, "at": when, "orders": len(plan.get("orders", []))},
            ),
        ]
        with IbkrJournalHook(self.journal_conn_id or "") as journal:
            journal.append(entries)
