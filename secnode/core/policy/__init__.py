"""Policy engine: data-sharing agreements and consent rules derived from APPI (pure core).

Public API (everything else is internal):

- model: :class:`PolicySnapshot` and the entities it holds
- files: :func:`load_policy`, :func:`loads_policy`, :func:`dump_policy`, :func:`save_policy`,
  :func:`validate_snapshot` (strict; :class:`PolicyFormatError` names the path)
- requests: :class:`PolicyRequest`, :func:`request_from_headers`, :func:`parse_request`
- decisions: :func:`decide`, :func:`precheck`, :func:`filter_fields`,
  :func:`decision_log_entry`, :func:`explain`, :func:`render_explanation`
- reports: :func:`build_transparency_report`, :func:`render_report`
"""

from .codec import (
    exception_profile_to_json,
    member_to_json,
    parse_exception_profile,
    parse_member,
    parse_service,
    service_to_json,
)
from .codec_agreement import CONSTRAINT_PROFILE, agreement_to_json, parse_agreement
from .codec_consent import (
    consent_to_json,
    parse_consent,
    parse_stop_request,
    stop_request_to_json,
)
from .decision import decide, decision_log_entry, precheck
from .explain import explain, render_explanation
from .fields import FieldFilterError, filter_fields
from .loader import (
    FORMAT,
    FORMAT_VERSION,
    dump_policy,
    dumps_policy,
    load_policy,
    loads_policy,
    parse_policy,
    policy_digest,
    save_policy,
    validate_snapshot,
)
from .model import (
    Agreement,
    ConsentRecord,
    Duties,
    ExceptionProfile,
    ExceptionReason,
    ForeignTransfer,
    Member,
    OrdinanceBasis,
    Permission,
    PolicySettings,
    PolicySnapshot,
    PurposeCode,
    Quotas,
    Service,
    ServiceField,
    StopRequest,
)
from .reasons import REASONS, Reason, Step
from .report import LogEntry, TransparencyReport, build_transparency_report
from .report_render import render_report
from .request import (
    AgreementRef,
    PolicyRequest,
    PolicyRequestError,
    UsageCounters,
    parse_request,
    request_from_headers,
    request_to_json,
)
from .result import EVALUATOR_VERSION, Decision, Obligation, ObligationKind
from .strict_json import PolicyFormatError, Value
from .timeutil import JST, IsoDuration, fiscal_year_bounds, fiscal_year_of
from .vocabulary import (
    BASES,
    AgreementState,
    AgreementType,
    Category,
    CollectionMethod,
    ConsentStatus,
    DataClass,
    LegalBasis,
    LegalType,
    OrdinanceKind,
    Route,
    Status,
    StopScope,
)

__all__ = [
    "BASES",
    "CONSTRAINT_PROFILE",
    "EVALUATOR_VERSION",
    "FORMAT",
    "FORMAT_VERSION",
    "JST",
    "REASONS",
    "Agreement",
    "AgreementRef",
    "AgreementState",
    "AgreementType",
    "Category",
    "CollectionMethod",
    "ConsentRecord",
    "ConsentStatus",
    "DataClass",
    "Decision",
    "Duties",
    "ExceptionProfile",
    "ExceptionReason",
    "FieldFilterError",
    "ForeignTransfer",
    "IsoDuration",
    "LegalBasis",
    "LegalType",
    "LogEntry",
    "Member",
    "Obligation",
    "ObligationKind",
    "OrdinanceBasis",
    "OrdinanceKind",
    "Permission",
    "PolicyFormatError",
    "PolicyRequest",
    "PolicyRequestError",
    "PolicySettings",
    "PolicySnapshot",
    "PurposeCode",
    "Quotas",
    "Reason",
    "Route",
    "Service",
    "ServiceField",
    "Status",
    "Step",
    "StopRequest",
    "StopScope",
    "TransparencyReport",
    "UsageCounters",
    "Value",
    "agreement_to_json",
    "build_transparency_report",
    "consent_to_json",
    "decide",
    "decision_log_entry",
    "dump_policy",
    "dumps_policy",
    "exception_profile_to_json",
    "explain",
    "filter_fields",
    "fiscal_year_bounds",
    "fiscal_year_of",
    "load_policy",
    "loads_policy",
    "member_to_json",
    "parse_agreement",
    "parse_consent",
    "parse_exception_profile",
    "parse_member",
    "parse_policy",
    "parse_request",
    "parse_service",
    "parse_stop_request",
    "policy_digest",
    "precheck",
    "render_explanation",
    "render_report",
    "request_from_headers",
    "request_to_json",
    "save_policy",
    "service_to_json",
    "stop_request_to_json",
    "validate_snapshot",
]
