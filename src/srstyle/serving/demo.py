"""The service's front-page description and its demo page (``GET /demo/``): one self-contained HTML file,
no external scripts, styles or fonts, so it works offline. It calls the same APIs a client would."""

from __future__ import annotations

DESCRIPTION = """\
# srstyle: super-resolution and style transfer

Images go in as multipart file fields; results come back as image bytes (PNG by default, `format=jpeg|webp`
with `quality` 1-100). A bad input (not an image, too large, unknown style...) is a 4xx JSON `{"error": ...}`.

**Try it in the browser: [the demo page](/demo/)** (upload a photo, upscale or stylize it, see both).

| endpoint | fields | what it does |
|---|---|---|
| `POST /upscale` | `image`, `scale` (3), `model` (optional), `format`, `quality` | super-resolution by the champion `sr-x<scale>` model (Y by the model, colour by bicubic) |
| `POST /stylize` | `image`, `style`, `format`, `quality`, `preserve_color` | a trained fast style network (`POST /models` lists the styles) |
| `POST /stylize_arbitrary` | `image`, `painting`, `format`, `quality`, `preserve_color` | any painting's style, through the meta network |
| `POST /models` | - | the served models, their registry versions and metrics, styles, scales, load errors |
| `POST /healthz`, `GET /livez` | - | liveness |
| `GET /readyz` | - | readiness: 503 until a model is loaded, 200 after |

Example: `curl -F image=@photo.png -F scale=3 -o photo_x3.png http://127.0.0.1:3000/upscale`
"""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>srstyle demo</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }
 fieldset { border: 1px solid #ccc; margin-bottom: 1rem; }
 .row { display: flex; gap: 1rem; flex-wrap: wrap; align-items: flex-start; }
 figure { margin: 0; max-width: 48%; } figure img { max-width: 100%; border: 1px solid #ddd; }
 #status { margin: .5rem 0; min-height: 1.2em; } .error { color: #b00; }
</style></head>
<body>
<h1>srstyle</h1>
<p>Upload a photo, choose what to do with it, and compare. Everything runs on this server.</p>
<form id="form">
 <fieldset><legend>Photo</legend><input type="file" id="photo" accept="image/*" required></fieldset>
 <fieldset><legend>What to do</legend>
  <label><input type="radio" name="mode" value="upscale" checked> Upscale
   <select id="scale"></select></label><br>
  <label><input type="radio" name="mode" value="stylize"> Style <select id="style"></select></label><br>
  <label><input type="radio" name="mode" value="arbitrary"> Style of a painting
   <input type="file" id="painting" accept="image/*"></label>
 </fieldset>
 <fieldset><legend>Output</legend>
  <select id="format"><option value="png">PNG</option><option value="jpeg">JPEG</option><option value="webp">WebP</option></select>
 </fieldset>
 <button type="submit" id="run">Run</button>
</form>
<div id="status"></div>
<div class="row">
 <figure><figcaption>Input</figcaption><img id="input-img" alt=""></figure>
 <figure><figcaption>Result</figcaption><img id="result-img" alt=""></figure>
</div>
<script>
const $ = (id) => document.getElementById(id);
async function loadModels() {
  const r = await fetch('/models', {method: 'POST', headers: {'Content-Type': 'application/json'}, body: '{}'});
  const info = await r.json();
  $('scale').innerHTML = (info.scales || []).map(s => `<option value="${s}">x${s}</option>`).join('');
  $('style').innerHTML = (info.styles || []).map(s => `<option value="${s}">${s}</option>`).join('');
  if (!info.ready) { $('status').textContent = 'No model is loaded yet.'; }
  document.body.dataset.models = 'loaded';
}
$('photo').addEventListener('change', () => {
  const f = $('photo').files[0];
  if (f) { $('input-img').src = URL.createObjectURL(f); }
});
$('form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const mode = document.querySelector('input[name=mode]:checked').value;
  const body = new FormData();
  body.append('image', $('photo').files[0]);
  body.append('format', $('format').value);
  let route = '/upscale';
  if (mode === 'upscale') { body.append('scale', $('scale').value); }
  else if (mode === 'stylize') { route = '/stylize'; body.append('style', $('style').value); }
  else { route = '/stylize_arbitrary'; body.append('painting', $('painting').files[0]); }
  $('status').className = ''; $('status').textContent = 'Working...';
  const t0 = performance.now();
  try {
    const r = await fetch(route, {method: 'POST', body});
    if (!r.ok) {
      let msg = r.statusText; try { msg = (await r.json()).error || msg; } catch (e) {}
      throw new Error(msg);
    }
    const blob = await r.blob();
    const img = $('result-img');
    img.onload = () => { document.body.dataset.result = 'done'; };
    img.src = URL.createObjectURL(blob);
    $('status').textContent = `Done in ${Math.round(performance.now() - t0)} ms (${r.headers.get('X-Srstyle-Size')}).`;
  } catch (e) {
    $('status').className = 'error'; $('status').textContent = 'Error: ' + e.message;
    document.body.dataset.result = 'error';
  }
});
loadModels();
</script>
</body></html>
"""


def demo_app():
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    async def page(_request):
        return HTMLResponse(PAGE)

    return Starlette(routes=[Route("/", page, methods=["GET"])])
