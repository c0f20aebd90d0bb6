"""Guardrail rules as pure code: the policy schema, the PII and secret detectors, the output scan
and the streaming output rail.

The guardrails service owns every organization's policy and runs all checks; the gateway runs the
output rail itself, next to the stream, with the policy it gets from guardrails (GetOutputPolicy),
so a streamed answer costs no round trip per delta. Both import the rules from here, so there is
one implementation of each.
"""
