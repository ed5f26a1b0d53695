// The model hub backends a daemon registers (hf://, modelscope://), each with its base URL from
// the config (backend.huggingFace.endpoint, backend.modelScope.endpoint).
import type { ModelHubScheme } from "../../common/model-hub.js";
import type { HttpBackendOptions } from "./http.js";
import { huggingFace } from "./hugging-face.js";
import { ModelHubBackend } from "./model-hub.js";
import { modelScope } from "./model-scope.js";

export function modelHubBackends(http: HttpBackendOptions, endpoints: Record<ModelHubScheme, string>): ModelHubBackend[] {
  return [new ModelHubBackend(huggingFace, { http, endpoint: endpoints.hf }), new ModelHubBackend(modelScope, { http, endpoint: endpoints.modelscope })];
}
