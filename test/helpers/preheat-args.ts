// The 400 a preheat job's args are refused with; args that are accepted fail the test.
import { expect } from "vitest";
import { HttpError } from "../../src/manager/errors.js";
import { parsePreheatArgs } from "../../src/manager/jobs/args.js";

export function refusedArgs(args: object): HttpError {
  try {
    parsePreheatArgs(args);
  } catch (e) {
    expect(e).toBeInstanceOf(HttpError);
    expect((e as HttpError).statusCode).toBe(400);
    return e as HttpError;
  }
  throw new Error(`accepted ${JSON.stringify(args)}`);
}
