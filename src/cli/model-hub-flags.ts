// dfget's model hub flags (issue 23), named as Dragonfly's dfget names them (with its DFGET_*
// environment variables and default revisions), filling the download's HuggingFace for hf://
// URLs and ModelScope for modelscope:// URLs only: other URLs never carry a hub token.
import { Option, type Command } from "commander";
import { DEFAULT_REVISION } from "../common/model-hub.js";
import type { HuggingFace, ModelScope } from "../gen/common/v2/common.js";

export interface ModelHubFlags {
  hfRevision: string;
  hfToken?: string;
  hfBaseUrl?: string;
  msRevision: string;
  msToken?: string;
  msBaseUrl?: string;
}

export function addModelHubOptions(program: Command): Command {
  return program
    .addOption(new Option("--hf-revision <revision>", "revision (branch, tag or commit) for Hugging Face Hub").env("DFGET_HF_REVISION").default(DEFAULT_REVISION.hf))
    .addOption(new Option("--hf-token <token>", "authentication token for Hugging Face Hub").env("DFGET_HF_TOKEN"))
    .addOption(new Option("--hf-base-url <url>", "base URL of the Hugging Face Hub endpoint (e.g. https://hf-mirror.com); the daemon's backend.huggingFace.endpoint (https://huggingface.co) when unset").env("DFGET_HF_BASE_URL"))
    .addOption(new Option("--ms-revision <revision>", "revision (branch, tag or commit) for ModelScope Hub").env("DFGET_MS_REVISION").default(DEFAULT_REVISION.modelscope))
    .addOption(new Option("--ms-token <token>", "authentication token for ModelScope Hub").env("DFGET_MS_TOKEN"))
    .addOption(new Option("--ms-base-url <url>", "base URL of the ModelScope Hub endpoint; the daemon's backend.modelScope.endpoint (https://modelscope.cn) when unset").env("DFGET_MS_BASE_URL"));
}

/** The download's hub options from the flags: each only for its own scheme. */
export function modelHubOf(url: string, f: ModelHubFlags): { huggingFace?: HuggingFace; modelScope?: ModelScope } {
  const scheme = new URL(url).protocol.replace(/:$/, "");
  if (scheme === "hf") return { huggingFace: { revision: f.hfRevision, token: f.hfToken, baseUrl: f.hfBaseUrl } };
  if (scheme === "modelscope") return { modelScope: { revision: f.msRevision, token: f.msToken, baseUrl: f.msBaseUrl } };
  return {};
}
