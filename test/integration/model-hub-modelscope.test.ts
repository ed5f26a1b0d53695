// modelscope:// back-to-source against the hub fixture; the checks are in helpers/model-hub-suite.ts.
import { modelHubSuite } from "../helpers/model-hub-suite.js";

modelHubSuite("modelscope");
