// The openai Node SDK's responses against Plugsky: responses.create and the responses.stream helper.
import OpenAI from "openai";
import { run } from "./config.mjs";

function client({ baseURL, apiKey }) {
  return new OpenAI({ baseURL, apiKey, maxRetries: 0 });
}

function request({ model }) {
  return { model, input: "What is 2+2?", max_output_tokens: 32, temperature: 0 };
}

function outputText(response) {
  const messages = response.output.filter((item) => item.type === "message");
  const parts = messages.flatMap((message) => message.content).filter((part) => part.type === "output_text");
  return parts.map((part) => part.text).join("");
}

async function create(settings) {
  const { data, request_id } = await client(settings).responses.create(request(settings)).withResponse();
  return { id: data.id, requestId: request_id, status: data.status, text: data.output_text, usage: data.usage };
}

async function stream(settings) {
  const events = client(settings).responses.stream(request(settings));
  const types = [];
  let text = "";
  for await (const event of events) {
    types.push(event.type);
    if (event.type === "response.output_text.delta") text += event.delta;
  }
  // The helper's final response is response.completed's own (it adds no output_text when
  // streaming): its text is read from the output items, to compare with the deltas.
  const final = await events.finalResponse();
  return { id: final.id, status: final.status, text, finalText: outputText(final), types, usage: final.usage };
}

await run({ create, stream });
