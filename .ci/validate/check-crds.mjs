// Validates deploy/kubernetes's Prometheus Operator resources (ServiceMonitor,
// PrometheusRule) against the operator's CRD schemas, offline, with the models the
// npm package @kubernetes-models/prometheus-operator generates from them.
import fs from "node:fs";
import path from "node:path";
import YAML from "yaml";
import * as v1 from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";

const dir = process.argv[2];
let failed = 0;
let checked = 0;
for (const file of fs.readdirSync(dir).filter((f) => f.endsWith(".yaml")).sort()) {
  for (const doc of YAML.parseAllDocuments(fs.readFileSync(path.join(dir, file), "utf8"))) {
    const obj = doc.toJS();
    if (!obj || obj.apiVersion !== "monitoring.coreos.com/v1") continue;
    const Model = v1[obj.kind];
    if (!Model) {
      console.error(`FAIL ${file}: no schema for ${obj.kind}`);
      failed++;
      continue;
    }
    try {
      new Model(obj).validate();
      console.log(`ok ${file}: ${obj.kind}/${obj.metadata.name}`);
      checked++;
    } catch (e) {
      console.error(`FAIL ${file}: ${obj.kind}: ${e.message}`);
      failed++;
    }
  }
}
if (failed || checked === 0) {
  console.error(`${failed} failed, ${checked} checked`);
  process.exit(1);
}
