#!/usr/bin/env bash
# Every committed result on the shipped toy backbone, regenerated stage by stage (docs: bench/README.md).
#   bench/toy_results.sh train | ship RUN=<folder> | judge | check | schedule [ROUND= LORA_LRS= TOKEN_LRS= STEPS= SCHEDULE_FLAGS=] | personalization | calibrate | sweep | cl | demo | all
# Each stage writes into bench/results/ (or docs/images/ for the demo) as it goes; run them in this
# order after retraining the toy: `schedule` chooses the preset's rates (on the tuning concepts),
# `calibrate` records τ, `sweep` tunes λ/τ (copy its best into core/engine/config.py), then the
# evaluation stages use the preset.
set -euo pipefail
cd "$(dirname "$0")/.."
MNEMO=${MNEMO:-.venv/bin/mnemo}
THREADS=${THREADS:-2}
TUNING=ladybug,chessboard,zebra-triangle,target-star,pumpkin-heart,dotted-cross

stage_train() {  # the toy backbone from scratch, one command (MODEL_CARD.md, "Training")
  $MNEMO toy train --what backbone --minutes "${MINUTES:-70}" --threads "$THREADS" --unet-steps 10000 \
    --seed "${SEED:-0}" --out "${RUN:-scratch/toy-run}"
}

stage_ship() {  # copy a trained folder over the shipped weights (the judge classifier stays)
  local run=${RUN:?set RUN to a folder written by stage_train}
  local weights=core/engine/toy/weights
  for part in unet vae text_encoder tokenizer scheduler; do
    rm -rf "${weights:?}/$part"
    cp -r "$run/$part" "$weights/$part"
  done
  cp "$run/model_index.json" "$run"/training_log.* "$weights/"
}

stage_judge() {  # the judge classifier, retrained on the world's renderer, over the shipped one (~8 min)
  $MNEMO toy train --what classifier --threads "$THREADS" --seed "${SEED:-0}" > /dev/null
}

stage_check() {
  mkdir -p bench/results/toy_check
  $MNEMO toy check --quick --json --backbone "${BACKBONE:-toy}" --threads "$THREADS" --grid bench/results/toy_check/grid_quick.png \
    > bench/results/toy_check/check_quick.json
  $MNEMO toy check --json --caption-losses --backbone "${BACKBONE:-toy}" --threads "$THREADS" --grid bench/results/toy_check/grid.png \
    > bench/results/toy_check/check.json
}

stage_schedule() {  # the toy preset's LoRA/token rates: a grid on the tuning concepts only
  $MNEMO bench personalization --concepts tuning --n-eval 12 --threads "$THREADS" \
    --lora-lr "${LORA_LRS:-2.5e-4,1e-3}" --token-lr "${TOKEN_LRS:-5e-4,5e-3,2e-2}" --steps "${STEPS:-120}" \
    ${SCHEDULE_FLAGS:-} --out "bench/results/personalization_schedule/${ROUND:-grid}" --json > /dev/null
}

stage_personalization() {  # the evaluation concepts (and the two photographs) at the preset
  $MNEMO bench personalization --concepts all --n-eval 24 --threads "$THREADS" \
    --out bench/results/personalization --json > /dev/null
}

stage_calibrate() {  # τ of the toy preset, on two tuning concepts
  $MNEMO bench calibrate --backbone toy --preset toy --concept-names ladybug,chessboard
}

stage_sweep() {  # λ and τ of EWC, EWC-DC and C-LoRA: the same budget each, on tuning concepts only
  $MNEMO bench sweep --mode cl --backbone toy --concept-names "${SWEEP_CONCEPTS:-ladybug,chessboard,zebra-triangle}" \
    --methods "${SWEEP_METHODS:-ewc,ewc_dc,c_lora}" --lambdas "${LAMBDAS:-0.1,1,10}" --budget "${BUDGET:-3}" \
    --n-eval "${SWEEP_N_EVAL:-12}" --out bench/results/sweep_toy --json > /dev/null
}

stage_cl() {  # the paper's table on the six evaluation concepts (METHODS, SEEDS to widen it)
  # CL_FLAGS: λ/τ other than the preset's (the preset carries the sweep's best,
  # bench/results/sweep_toy/README.md), e.g. "--ewc-lambda 0.1 --ewc-dc-lambda 1 --c-lora-lambda 0.1"
  # shellcheck disable=SC2086
  $MNEMO bench cl --backbone toy --methods "${METHODS:-lora_sequential,c_lora,dsc_ewc_dc}" \
    --seeds "${SEEDS:-0}" --n-eval 24 ${CL_FLAGS:-} --out bench/results/cl_toy --json > /dev/null
}

stage_demo() {  # the README's pictures
  rm -rf mnemo-demo
  $MNEMO demo --out mnemo-demo | tee mnemo-demo.log
  mkdir -p docs/images
  cp mnemo-demo/grid.png docs/images/demo_grid.png
  cp mnemo-demo/recognition.json docs/images/demo_recognition.json
}

if [ "${1:-}" = all ]; then
  for s in check schedule personalization calibrate sweep cl demo; do "stage_$s"; done
else
  "stage_${1:?usage: bench/toy_results.sh train|ship|judge|check|schedule|personalization|calibrate|sweep|cl|demo|all}"
fi
