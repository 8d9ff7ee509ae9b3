// Classifies sequences in the page with onnxruntime-web: load model.onnx, run it on the
// inputs of a cases file, show one row per sequence (class from labels.txt, its probability).
//
// Model inputs (the export's contract): `features` float32 [batch, time, D] (raw values; the
// normalisation is inside the graph) or `token_ids` int32 [batch, time], and `lengths` int32
// [batch]. Outputs: `logits` and `probabilities` float32 [batch, classes], `class_ids` int64.
//
// A cases file is JSON: {"inputs": {name: {"type": "float32" | "int32", "dims": [...],
// "data": [flat row-major values]}}}. When the page is done, window.classifierResult resolves
// to {"outputs": {name: {"type", "dims", "data"}}, "rows": [...]} (what run_browser.mjs reads).
import * as ort from "./node_modules/onnxruntime-web/dist/ort.wasm.min.mjs";

// One thread: several would need SharedArrayBuffer, i.e. a cross-origin-isolated page.
ort.env.wasm.numThreads = 1;

const ARRAYS = { float32: Float32Array, int32: Int32Array };

export function toTensor(spec) {
  const Array_ = ARRAYS[spec.type];
  if (!Array_) throw new Error(`input type ${spec.type}: expected float32 or int32`);
  return new ort.Tensor(spec.type, Array_.from(spec.data), spec.dims);
}

function fromTensor(tensor) {
  // int64 outputs (class_ids) come back as BigInt64Array: plain numbers for JSON.
  return { type: tensor.type, dims: Array.from(tensor.dims), data: Array.from(tensor.data, Number) };
}

export async function classify(session, inputs) {
  const feeds = {};
  for (const name of session.inputNames) {
    if (!(name in inputs)) throw new Error(`cases file: input ${name} missing (model inputs: ${session.inputNames})`);
    feeds[name] = toTensor(inputs[name]);
  }
  const results = await session.run(feeds);
  const outputs = {};
  for (const name of session.outputNames) outputs[name] = fromTensor(results[name]);
  return outputs;
}

async function fetchOk(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response;
}

function render(outputs, lengths, labels) {
  const [batch, classes] = outputs.probabilities.dims;
  const body = document.querySelector("#results tbody");
  const rows = [];
  for (let i = 0; i < batch; i++) {
    const probabilities = outputs.probabilities.data.slice(i * classes, (i + 1) * classes);
    const best = probabilities.indexOf(Math.max(...probabilities));
    const row = { sequence: i, length: lengths[i], class: labels[best] ?? String(best), probability: probabilities[best] };
    rows.push(row);
    const tr = document.createElement("tr");
    for (const value of [row.sequence, row.length, row.class, row.probability.toFixed(4)]) {
      const td = document.createElement("td");
      td.textContent = value;
      tr.appendChild(td);
    }
    body.appendChild(tr);
  }
  return rows;
}

async function main() {
  const params = new URLSearchParams(location.search);
  const status = document.getElementById("status");
  const session = await ort.InferenceSession.create(params.get("model") || "model.onnx",
                                                    { executionProviders: ["wasm"] });
  const labels = params.get("labels")
    ? (await (await fetchOk(params.get("labels"))).text()).split("\n").filter((l) => l.length) : [];
  if (!params.get("cases")) {
    status.textContent = `model loaded: inputs ${session.inputNames}, outputs ${session.outputNames}`;
    return { outputs: {}, rows: [] };
  }
  const cases = await (await fetchOk(params.get("cases"))).json();
  const outputs = await classify(session, cases.inputs);
  const rows = render(outputs, cases.inputs.lengths.data, labels);
  status.textContent = `classified ${rows.length} sequences`;
  return { outputs, rows };
}

window.classifierResult = main().catch((error) => {
  document.getElementById("status").textContent = `error: ${error.message}`;
  console.error(error);
  throw error;
});
