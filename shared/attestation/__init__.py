"""Verifiers for real TEE attestation evidence (see ``docs/evidence.md``).

- :func:`verify_maa_token`: Azure Attestation JWTs for SGX enclaves and SEV-SNP VMs.
- :func:`verify_nitro_document`: AWS Nitro Enclaves attestation documents (COSE_Sign1).
- :func:`verify_software_report` / :class:`SoftwarePolicy`: the ``process`` provider's
  software/debug report (accepted only by a policy that allows software evidence explicitly).

Both raise :class:`~shared.errors.AttestationError` whose ``reason`` is a :class:`Reason`
value, and their results convert to the format-independent :class:`VerifiedEvidence`.
"""

from shared.errors import AttestationError

from .evidence import Evidence, EvidencePolicy, Reason, VerifiedEvidence, cryptlet_report_data
from .maa import SEVSNP, SGX, MaaClaims, MaaPolicy, check_runtime_binding, verify_maa_token
from .nitro import (
    AWS_NITRO_ROOT_G1_SHA256,
    NitroDocument,
    NitroPolicy,
    aws_nitro_root_g1,
    verify_nitro_document,
)
from .software import SoftwarePolicy, sign_software_report, verify_software_report

__all__ = [
    "AWS_NITRO_ROOT_G1_SHA256",
    "AttestationError",
    "Evidence",
    "EvidencePolicy",
    "MaaClaims",
    "MaaPolicy",
    "NitroDocument",
    "NitroPolicy",
    "Reason",
    "SEVSNP",
    "SGX",
    "SoftwarePolicy",
    "VerifiedEvidence",
    "aws_nitro_root_g1",
    "check_runtime_binding",
    "cryptlet_report_data",
    "sign_software_report",
    "verify_maa_token",
    "verify_nitro_document",
    "verify_software_report",
]
