// An integrator's TypeScript on the types openapi-typescript generates from openapi.json
// (written beside this file as irmi-api.d.ts by tests/clients/test_generated_clients.py and
// type-checked with `tsc --noEmit`). The @ts-expect-error lines fail the check if the
// document loses what they rely on (the error-code enum, the hand-chosen operation ids).
import type { components, operations, paths } from "./irmi-api";

type Schemas = components["schemas"];
type StudyDetail = Schemas["StudyDetail"];
type ErrorEnvelope = Schemas["ErrorEnvelope"];
type ErrorCode = Schemas["ErrorBody"]["code"];
type LoginBody = paths["/v1/auth/login"]["post"]["requestBody"]["content"]["application/json"];
type TokenPair = operations["logIn"]["responses"][200]["content"]["application/json"];
type StudyEvent =
  | { event: "progress"; data: Schemas["ProgressEvent"] }
  | { event: "retry"; data: Schemas["StudyRetryEvent"] }
  | { event: "result"; data: Schemas["StudyResultEvent"] }
  | { event: "error"; data: Schemas["StudyErrorEvent"] };

export const notAChestXray: ErrorCode = "not_a_chest_xray";
// @ts-expect-error: the code is an enum, not any string
export const unknownCode: ErrorCode = "no_such_code";
// @ts-expect-error: operation ids are hand-chosen, not FastAPI's path-derived defaults
export type Default = operations["upload_chest_v1_studies_chest_post"];

async function json<T>(response: Response): Promise<T> {
  if (!response.ok) {
    const failure = (await response.json()) as ErrorEnvelope;
    throw new Error(`${failure.error.code}: ${failure.error.message}`);
  }
  return (await response.json()) as T;
}

export async function screenChestXray(
  baseUrl: string,
  login: LoginBody,
  xray: Blob,
): Promise<{ study: StudyDetail; heatmap: Blob | null }> {
  const tokens = await json<TokenPair>(
    await fetch(`${baseUrl}/v1/auth/login`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(login),
    }),
  );
  const auth = { Authorization: `Bearer ${tokens.access_token}` };
  const form = new FormData();
  form.append("file", xray, "chest.png");
  const study = await json<StudyDetail>(
    await fetch(`${baseUrl}/v1/studies/chest`, { method: "POST", headers: auth, body: form }),
  );
  const url = study.chest_result?.heatmap?.url;
  const heatmap = url ? await (await fetch(`${baseUrl}${url}`, { headers: auth })).blob() : null;
  return { study, heatmap };
}

export function describe(event: StudyEvent): string {
  switch (event.event) {
    case "progress":
      return `${event.data.stage}: ${event.data.percent}%`;
    case "retry":
      return `retry ${event.data.attempt} (${event.data.reason})`;
    case "result":
      return `done: ${event.data.chest_result?.effective.category ?? "mammography"}`;
    case "error":
      return `failed: ${event.data.error.code}`;
  }
}
