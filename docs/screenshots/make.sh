#!/usr/bin/env bash
# Regenerate the report screenshots in this folder (headless Chromium; about 3 minutes on
# 2 cores): bash docs/screenshots/make.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$(mktemp -d)
pa=.venv/bin/pathattr
$pa explain --demo --out "$out/demo" --quiet
$pa explain photo:coffee --method ig,idgi,deeplift,saliency --out "$out/photo" --quiet
$pa explain --text "A man is playing a guitar." --pair "Someone plays music." --out "$out/text" --quiet
$pa explain --text "In the face of" --generate 10 --method ig --out "$out/gen" --quiet
$pa evaluate photo:chelsea photo:coffee photo:astronaut photo:rocket --method ig,idg,saliency \
    --metrics insertion,deletion --curve-steps 20 --out "$out/eval" --quiet
.venv/bin/python - "$out/digits.npz" <<'PY'
import sys
import numpy as np
from pathattr.zoo import digits_data
x = digits_data()[2][:40].numpy()
np.savez(sys.argv[1], x=x)
PY
$pa run --model digits-cnn --data "$out/digits.npz" --method ig,saliency --out "$out/run" --quiet
$pa summarize "$out/run" --quiet
shot() {  # page, name, height
    chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1200,"$3" \
        --screenshot="$out/$2.png" "file://$1" 2>/dev/null
    .venv/bin/python -c "from PIL import Image; Image.open('$out/$2.png').convert('RGB')\
.quantize(colors=128).save('docs/screenshots/$2.png', optimize=True)"
}
shot "$out/demo/chelsea/report.html" demo 2400
shot "$out/photo/coffee/report.html" photo 1300
shot "$(ls "$out"/text/text/*/report.html)" text-pair 1100
shot "$(ls "$out"/gen/generation/*/ig/report.html)" generate 1500
shot "$out/eval/evaluation.html" evaluate 1700
shot "$out/run/report.html" summarize 1500
echo "screenshots in docs/screenshots/ (pages in $out)"
