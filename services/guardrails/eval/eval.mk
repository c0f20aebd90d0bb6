# Included from the root Makefile: the input guardrail's injection check, scored and trained on the
# committed data (services/guardrails/eval/data, rebuilt by build_data.py; see the guardrails README).

.PHONY: eval-guardrails train-guardrails

eval-guardrails: install
	$(BIN)/python -m services.guardrails.eval.evaluate --out .run/guardrails-eval.json

# Refits guardrails_service/injection_model.json.gz on the train split (thresholds on dev).
train-guardrails: install
	$(BIN)/python -m services.guardrails.eval.train
