// Chat prompts from messages.
//
// GGUF files carry their chat template as Jinja text (tokenizer.chat_template).
// tabfit has no Jinja interpreter. Instead it recognises the template family by
// its marker tokens and renders that family's format itself:
//   ChatML (<|im_start|>), Llama 3 (<|start_header_id|>), Llama 2 / Mistral
//   ([INST]), Zephyr / TinyLlama (<|user|>), Gemma (<start_of_turn>).
// A template of none of these families, or no template at all, gets the
// documented fallback: an optional system text, then "User: ...\n" and
// "Assistant: ...\n" lines, ending with "Assistant:"; generation stops at
// "\nUser:". Templates with custom logic (tool calls, date injection...) are
// not reproduced beyond their family's basic turn format.

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export type ChatFormat = 'chatml' | 'llama3' | 'llama2' | 'zephyr' | 'gemma' | 'fallback';

export interface RenderedChat {
  format: ChatFormat;
  prompt: string;
  /** Stop strings for the generation (besides the model's end-of-generation tokens). */
  stop: string[];
  /** Whether the prompt contains special-token text that must be parsed as such. */
  parseSpecial: boolean;
}

export function detectChatFormat(template: string | null | undefined): ChatFormat {
  if (!template) return 'fallback';
  if (template.includes('<|im_start|>')) return 'chatml';
  if (template.includes('<|start_header_id|>')) return 'llama3';
  if (template.includes('<start_of_turn>')) return 'gemma';
  if (template.includes('<|user|>')) return 'zephyr';
  if (template.includes('[INST]')) return 'llama2';
  return 'fallback';
}

function check(messages: ChatMessage[]): void {
  if (!Array.isArray(messages) || messages.length === 0) throw new TypeError('messages must be a non-empty array');
  for (const m of messages) {
    if (!m || !['system', 'user', 'assistant'].includes(m.role) || typeof m.content !== 'string') {
      throw new TypeError('each message needs role "system", "user" or "assistant" and a string content');
    }
  }
}

/** Renders messages for the model; BOS is added by the engine (add_bos), not here. */
export function renderChat(messages: ChatMessage[], template: string | null | undefined,
  eosText = '</s>'): RenderedChat {
  check(messages);
  const format = detectChatFormat(template);
  let prompt = '';
  switch (format) {
    case 'chatml':
      for (const m of messages) prompt += `<|im_start|>${m.role}\n${m.content}<|im_end|>\n`;
      prompt += '<|im_start|>assistant\n';
      return { format, prompt, stop: ['<|im_end|>'], parseSpecial: true };
    case 'llama3':
      for (const m of messages) {
        prompt += `<|start_header_id|>${m.role}<|end_header_id|>\n\n${m.content.trim()}<|eot_id|>`;
      }
      prompt += '<|start_header_id|>assistant<|end_header_id|>\n\n';
      return { format, prompt, stop: ['<|eot_id|>'], parseSpecial: true };
    case 'gemma':
      // Gemma has no system role: its template prepends the system text to the first user turn.
      {
        let sys = '';
        for (const m of messages) {
          if (m.role === 'system') { sys += m.content + '\n\n'; continue; }
          const role = m.role === 'assistant' ? 'model' : 'user';
          prompt += `<start_of_turn>${role}\n${role === 'user' ? sys : ''}${m.content.trim()}<end_of_turn>\n`;
          if (role === 'user') sys = '';
        }
      }
      prompt += '<start_of_turn>model\n';
      return { format, prompt, stop: ['<end_of_turn>'], parseSpecial: true };
    case 'zephyr':
      for (const m of messages) prompt += `<|${m.role}|>\n${m.content}${eosText}\n`;
      prompt += '<|assistant|>\n';
      return { format, prompt, stop: [eosText], parseSpecial: true };
    case 'llama2': {
      let sys = '';
      let first = true;
      for (const m of messages) {
        if (m.role === 'system') { sys = `<<SYS>>\n${m.content}\n<</SYS>>\n\n`; continue; }
        if (m.role === 'user') {
          prompt += `${first ? '' : '<s>'}[INST] ${sys}${m.content.trim()} [/INST]`;
          sys = '';
          first = false;
        } else {
          prompt += ` ${m.content.trim()} ${eosText}`;
        }
      }
      return { format, prompt, stop: [eosText], parseSpecial: true };
    }
    case 'fallback': {
      for (const m of messages) {
        if (m.role === 'system') prompt += `${m.content}\n\n`;
        else prompt += `${m.role === 'user' ? 'User' : 'Assistant'}: ${m.content}\n`;
      }
      prompt += 'Assistant:';
      return { format, prompt, stop: ['\nUser:'], parseSpecial: false };
    }
  }
}
